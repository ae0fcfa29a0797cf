/* Decoded XML-RPC replies for xe: a read-only tree, nodes in one arena per reply, strings
 * decoded in place in the reply buffer. xmlrpc-c's decoder allocates every node and element on
 * its own and took ~250 ms for the 3.8 MB of a 500-VM VM.get_all_records, libxml2's SAX ~30 ms,
 * this a few. It reads what XML-RPC servers send (no DTD, no CDATA) and refuses the rest. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef enum xv_kind {
    XV_STRING = 0, /* also base64, as text */
    XV_INT,
    XV_BOOL,
    XV_DOUBLE,
    XV_DATETIME,
    XV_NIL,
    XV_ARRAY,
    XV_STRUCT,
} xv_kind;

typedef struct xv {
    unsigned char kind;
    unsigned n;          /* ARRAY, STRUCT: number of children */
    const char *s;       /* scalars: the text as sent ("" if none) */
    const char *key;     /* a STRUCT member's name */
    struct xv *first, *last, *next;
} xv;

typedef struct xv_doc xv_doc;

/* Parses the methodResponse in xml[0..len) (writable, decoded in place; the doc owns and frees
 * it, also on failure). 0: *ret_value is the param, or the fault struct with *ret_fault set;
 * -EBADMSG: not XML-RPC (*ret_why says why). The tree lives until xv_doc_free. */
int xv_parse(char *xml, size_t len, xv_doc **ret_doc, const xv **ret_value, bool *ret_fault,
             const char **ret_why);
void xv_doc_free(xv_doc *d);

const xv *xv_member(const xv *s, const char *name); /* NULL if absent or s not a STRUCT */
const char *xv_str(const xv *v);                    /* scalar text, "" for anything else */
