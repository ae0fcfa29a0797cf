#!/usr/bin/env python3
"""Generates the C datamodel tables (schema_gen.c, schema_ids.h) from the
repository's copy of the XenAPI class schema (classes.json), its one-to-many
relations (relations.json) and the RBAC roles of the implicit messages and
protected map keys (roles.json).
Usage: gen_schema.py classes.json relations.json roles.json OUTDIR"""

import calendar
import json
import os
import re
import sys
import time

# xapi's roles, least privileged first: the index is the rank the C side compares.
# A message without a role (xapi's _R_LOCAL_ROOT_ONLY) is for the local superuser only.
ROLES = ["read-only", "vm-operator", "vm-admin", "vm-power-admin", "pool-operator", "pool-admin"]
DEFAULT_WRITE_ROLE = "pool-admin"  # a class roles.json does not know: fail secure

NO_EVENTS = {"session", "secret", "user", "auth", "data_source", "sr_stat", "probe_result"}


class Gen:
    def __init__(self, schema, relations, roles):
        self.schema = schema
        self.classes = schema["classes"]
        self.class_names = list(self.classes.keys())
        self.class_index = {n: i for i, n in enumerate(self.class_names)}
        self.enums = schema["enums"]
        self.enum_names = sorted(self.enums)
        self.enum_index = {n: i for i, n in enumerate(self.enum_names)}
        self.types = {}  # text -> (cname, parsed)
        self.type_decls = []
        self.values = []  # C declarations of default values
        self.nvalues = 0
        self.relations = relations
        self.roles = roles

    # ---- types -------------------------------------------------------------
    def parse_type(self, t):
        t = t.strip()
        if t in ("string", "int", "float", "bool", "datetime", "void"):
            return (t,)
        if t == "an event batch":
            return ("event_batch",)
        if t == "<class> record":
            return ("any_record",)
        if t.endswith(" map"):
            inner = t[: -len(" map")].strip()
            assert inner[0] == "(" and inner[-1] == ")", t
            inner = inner[1:-1]
            depth = 0
            for i in range(len(inner)):
                c = inner[i]
                if c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                elif depth == 0 and inner.startswith(" -> ", i):
                    return ("map", inner[:i], inner[i + 4:])
            raise ValueError(t)
        if t.endswith(" set"):
            return ("set", t[: -len(" set")])
        if t.endswith(" option"):
            return ("option", t[: -len(" option")])
        if t.startswith("enum "):
            return ("enum", t[5:])
        if t.endswith(" ref"):
            return ("ref", t[: -len(" ref")])
        if t.endswith(" record"):
            return ("record", t[: -len(" record")])
        raise ValueError("unknown type " + t)

    def type_ref(self, t):
        """Returns the C name of the xapi_type for text t, emitting it if new."""
        t = t.strip()
        if t in self.types:
            return self.types[t][0]
        p = self.parse_type(t)
        elem = key = "NULL"
        enumv = "NULL"
        cname_ = "NULL"
        cid = -1
        kind = {
            "string": "XAPI_T_STRING", "int": "XAPI_T_INT", "float": "XAPI_T_FLOAT", "bool": "XAPI_T_BOOL",
            "datetime": "XAPI_T_DATETIME", "void": "XAPI_T_VOID", "event_batch": "XAPI_T_EVENT_BATCH",
            "any_record": "XAPI_T_ANY_RECORD", "map": "XAPI_T_MAP", "set": "XAPI_T_SET",
            "option": "XAPI_T_OPTION", "enum": "XAPI_T_ENUM", "ref": "XAPI_T_REF", "record": "XAPI_T_RECORD",
        }[p[0]]
        if p[0] == "map":
            key = "&" + self.type_ref(p[1])
            elem = "&" + self.type_ref(p[2])
        elif p[0] in ("set", "option"):
            elem = "&" + self.type_ref(p[1])
        elif p[0] == "enum":
            enumv = "&xapi_enums[%d]" % self.enum_index[p[1]]
        elif p[0] in ("ref", "record"):
            cname_ = cstr(p[1])
            cid = self.class_index.get(p[1], -1)
        name = "T%d" % len(self.types)
        self.types[t] = (name, p)
        self.type_decls.append(
            "static const xapi_type %s = {%s, %s, %s, %s, %s, %d, %s};"
            % (name, kind, elem, key, enumv, cname_, cid, cstr(t)))
        return name

    # ---- values ------------------------------------------------------------
    def zero(self, t):
        p = self.parse_type(t)
        k = p[0]
        if k in ("string",):
            return ""
        if k == "int":
            return 0
        if k == "float":
            return 0.0
        if k == "bool":
            return False
        if k == "datetime":
            return ("datetime", 0)
        if k == "enum":
            return self.enums[p[1]][0]
        if k == "ref":
            return "OpaqueRef:NULL"
        if k == "set":
            return []
        if k == "map":
            return {}
        return None

    def parse_default(self, t, text):
        """Turns a default as printed by xapi's doc generator into a Python value."""
        p = self.parse_type(t)
        k = p[0]
        s = text.strip()
        if k == "string":
            if s in ("Null", "None"):
                return ""
            assert s.startswith('"') and s.endswith('"'), (t, s)
            return s[1:-1]
        if k == "int":
            return int(s)
        if k == "float":
            return float(s)
        if k == "bool":
            return s == "true"
        if k == "datetime":
            tm = time.strptime(s, "%Y%m%dT%H:%M:%SZ")
            return ("datetime", calendar.timegm(tm))
        if k == "enum":
            vals = self.enums[p[1]]
            for v in vals:
                if v.lower() == s.strip('"').lower():
                    return v
            raise ValueError("bad enum default %s %s" % (t, s))
        if k == "ref":
            s = s.strip('"')
            if s in ("Null", "None", "OpaqueRef:NULL"):
                return "OpaqueRef:NULL"
            return s
        if k == "set":
            assert s.startswith("{") and s.endswith("}"), s
            body = s[1:-1].strip()
            if not body:
                return []
            return [self.parse_default(p[1], x.strip() if self.parse_type(p[1])[0] != "string" else x.strip())
                    for x in split_top(body, ",")]
        if k == "map":
            assert s.startswith("{") and s.endswith("}"), s
            body = s[1:-1].strip()
            if not body:
                return {}
            out = {}
            for item in split_top(body, ","):
                kk, vv = item.split("->", 1)
                out[str(self.parse_default(p[1], kk.strip()))] = self.parse_default(p[2], vv.strip())
            return out
        raise ValueError("no default for " + t)

    def emit_value(self, t, v):
        """Emits a static xapi_value for Python value v of type t; returns its C name."""
        name = "V%d" % self.nvalues
        self.nvalues += 1
        self.values.append("static const xapi_value %s = %s;" % (name, self.value_init(t, v, name)))
        return name

    def value_init(self, t, v, name):
        """The C initializer of a value; arrays it needs are emitted under name_*."""
        p = self.parse_type(t)
        k = p[0]
        if k in ("string", "enum", "ref"):
            init = "{.kind = XAPI_V_STRING, .n = %d, .s = %s}" % (len(v.encode()), "xapi_empty_string" if v == "" else "(char *)" + cstr(v))
        elif k == "int":
            init = "{.kind = XAPI_V_INT, .i = %dLL}" % v
        elif k == "float":
            init = "{.kind = XAPI_V_FLOAT, .f = %r}" % float(v)
        elif k == "bool":
            init = "{.kind = XAPI_V_BOOL, .b = %s}" % ("true" if v else "false")
        elif k == "datetime":
            init = "{.kind = XAPI_V_DATETIME, .i = %dLL}" % v[1]
        elif k == "set":
            if not v:
                init = "{.kind = XAPI_V_ARRAY, .n = 0, .items = NULL}"
            else:
                items = [self.value_init(p[1], x, "%s_%d" % (name, i)) for i, x in enumerate(v)]
                self.values.append("static const xapi_value %s_items[] = {%s};" % (name, ", ".join(items)))
                init = "{.kind = XAPI_V_ARRAY, .n = %d, .items = (xapi_value *)%s_items}" % (len(v), name)
        elif k == "map":
            if not v:
                init = "{.kind = XAPI_V_STRUCT, .n = 0, .members = NULL}"
            else:
                mems = []
                for i, (kk, vv) in enumerate(v.items()):
                    vi = self.value_init(p[2], vv, "%s_%d" % (name, i))
                    mems.append("{.name = (char *)%s, .value = %s}" % (cstr(kk), vi))
                self.values.append("static const xapi_member %s_members[] = {%s};" % (name, ", ".join(mems)))
                init = "{.kind = XAPI_V_STRUCT, .n = %d, .members = (xapi_member *)%s_members}" % (len(v), name)
        else:
            raise ValueError("cannot emit value of " + t)
        return init

    def run(self, outdir):
        rel_one = {}   # (class, reffield) -> (class, setfield)
        rel_many = {}  # (class, setfield) -> (class, reffield)
        for (mc, mf), (oc, of) in self.relations:
            rel_one[(oc, of)] = (mc, mf)
            rel_many[(mc, mf)] = (oc, of)

        def findex(cn, fn):
            for i, f in enumerate(self.classes[cn].get("fields", [])):
                if f["name"] == fn:
                    return i
            raise KeyError((cn, fn))

        body = []
        ids = ["/* Generated by xapi/schema/gen_schema.py. Do not edit. */", "#pragma once", ""]
        for ci, cn in enumerate(self.class_names):
            ids.append("#define XAPI_C_%s %d" % (cn, ci))
        ids.append("#define XAPI_NCLASSES %d" % len(self.class_names))
        for ei, en in enumerate(self.enum_names):
            ids.append("#define XAPI_E_%s %d" % (en, ei))

        class_inits = []
        for ci, cn in enumerate(self.class_names):
            c = self.classes[cn]
            croles = self.roles.get(cn, {})
            fields = c.get("fields", [])
            req = set(c.get("create_record", {}).get("required", []))
            finits = []
            f_uuid = f_name = -1
            for fi, f in enumerate(fields):
                ids.append("#define XAPI_F_%s_%s %d" % (cn, f["name"], fi))
                if f["name"] == "uuid":
                    f_uuid = fi
                if f["name"] == "name_label":
                    f_name = fi
                tname = self.type_ref(f["type"])
                p = self.parse_type(f["type"])
                keys = "NULL, 0"
                kr = croles.get("map_keys", {}).get(f["name"])
                if kr:
                    kname = "K_%s_%s" % (cn, f["name"])
                    body.append("static const xapi_key_role %s[] = {%s};" % (kname, ", ".join(
                        "{%s, %s, %s}" % (cstr(k), b(k.endswith("*")), role_rank(r)) for k, r in kr.items())))
                    keys = "%s, %d" % (kname, len(kr))
                if p[0] in ("any_record",):
                    finits.append("{%s, %d, &%s, %s, false, false, false, NULL, -1, -1, %s}" % (
                        cstr(f["name"]), len(f["name"]), tname, qual(f["qualifier"]), keys))
                    continue
                has_def = "default" in f
                val = self.parse_default(f["type"], f["default"]) if has_def else self.zero(f["type"])
                vname = self.emit_value(f["type"], val)
                rc, rf = -1, -1
                derived = False
                if (cn, f["name"]) in rel_one:
                    mc, mf = rel_one[(cn, f["name"])]
                    rc, rf = self.class_index[mc], findex(mc, mf)
                if (cn, f["name"]) in rel_many:
                    oc, of = rel_many[(cn, f["name"])]
                    rc, rf = self.class_index[oc], findex(oc, of)
                    derived = True
                finits.append("{%s, %d, &%s, %s, %s, %s, %s, &%s, %d, %d, %s}" % (
                    cstr(f["name"]), len(f["name"].encode()), tname, qual(f["qualifier"]),
                    b(has_def), b(f["name"] in req), b(derived), vname, rc, rf, keys))
            if fields:
                body.append("static const xapi_field F_%s[] = {\n  %s\n};" % (cn, ",\n  ".join(finits)))
            minits = []
            for m in c.get("messages", []):
                pinits = []
                nreq = 0
                for pi, prm in enumerate(m["params"]):
                    tname = self.type_ref(prm["type"])
                    if "default" in prm:
                        vname = self.emit_value(prm["type"], self.parse_default(prm["type"], prm["default"]))
                        pinits.append("{%s, &%s, &%s}" % (cstr(prm["name"]), tname, vname))
                    else:
                        assert nreq == pi, "non-trailing default in %s.%s" % (cn, m["name"])
                        nreq += 1
                        pinits.append("{%s, &%s, NULL}" % (cstr(prm["name"]), tname))
                pname = "NULL"
                if pinits:
                    pname = "P_%s_%s" % (cn, m["name"])
                    body.append("static const xapi_param %s[] = {%s};" % (pname, ", ".join(pinits)))
                rname = self.type_ref(m["result"])
                state = {"deprecated": "XAPI_MSG_DEPRECATED", "prototyped": "XAPI_MSG_PROTOTYPED",
                         "removed": "XAPI_MSG_REMOVED"}.get(m.get("state", ""), "XAPI_MSG_PUBLISHED")
                minits.append("{%s, %s, %d, %d, &%s, %s, %s, %s, %s, %s}" % (
                    cstr(m["name"]), pname, len(m["params"]), nreq, rname, b(m.get("async", False)),
                    b(m.get("no_session", False)), state, cstr(m.get("min_role", "")),
                    role_rank(m.get("min_role"))))
            if minits:
                body.append("static const xapi_message M_%s[] = {\n  %s\n};" % (cn, ",\n  ".join(minits)))
            imp = c.get("implicit") or {}
            ctor = {"implicit": "XAPI_CTOR_IMPLICIT", "custom": "XAPI_CTOR_CUSTOM"}
            iroles = croles.get("implicit", {})
            rname = "NULL"
            if iroles:
                rname = "R_%s" % cn
                body.append("static const xapi_msg_role %s[] = {%s};" % (rname, ", ".join(
                    "{%s, %s}" % (cstr(k), role_rank(v)) for k, v in sorted(iroles.items()))))
            class_inits.append(
                "{%s, %s, %d, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %d, %s, %d, %d, %d, %s, %s, %d}" % (
                    cstr(cn), cstr(cn.lower()), ci, b(c.get("in_database", False)),
                    b(c.get("in_database", False) and cn not in NO_EVENTS),
                    b(imp.get("get_record")), b(imp.get("get_by_uuid")), b(imp.get("get_by_name_label")),
                    b(imp.get("get_all")), b(imp.get("get_all_records")), b(imp.get("get_all_where")),
                    ctor.get(imp.get("create"), "XAPI_CTOR_NONE"), ctor.get(imp.get("destroy"), "XAPI_CTOR_NONE"),
                    "F_%s" % cn if fields else "NULL", len(fields),
                    "M_%s" % cn if minits else "NULL", len(minits), f_uuid, f_name,
                    role_rank(croles.get("default", DEFAULT_WRITE_ROLE)), rname, len(iroles)))

        enum_decls = []
        for en in self.enum_names:
            vals = self.enums[en]
            enum_decls.append("static const char *const EV_%s[] = {%s};" % (en, ", ".join(cstr(v) for v in vals)))
        out = ["/* Generated by xapi/schema/gen_schema.py from xapi/schema/classes.json. Do not edit. */",
               "#include \"xapi/schema.h\"", ""]
        out += enum_decls
        out.append("const xapi_enum xapi_enums[] = {\n  %s\n};" % ",\n  ".join(
            "{%s, %d, EV_%s}" % (cstr(en), len(self.enums[en]), en) for en in self.enum_names))
        out.append("const unsigned xapi_nenums = %d;" % len(self.enum_names))
        out += self.type_decls
        out += self.values
        out += body
        out.append("const xapi_class xapi_classes[] = {\n  %s\n};" % ",\n  ".join(class_inits))
        out.append("const unsigned xapi_nclasses = %d;" % len(self.class_names))
        meta = self.schema.get("_meta", {})
        out.append("const int xapi_api_version_major = %d, xapi_api_version_minor = %d;" % (
            meta.get("api_version_major", 2), meta.get("api_version_minor", 23)))
        write_if_changed(os.path.join(outdir, "schema_gen.c"), "\n".join(out) + "\n")
        write_if_changed(os.path.join(outdir, "schema_ids.h"), "\n".join(ids) + "\n")


def role_rank(name):
    """The C rank of a role name; no role at all: the local superuser only."""
    if not name:
        return "XAPI_ROLE_LOCAL_ROOT"
    return "XAPI_ROLE_" + name.upper().replace("-", "_")


def split_top(s, sep):
    parts, depth, cur, inq = [], 0, "", False
    for ch in s:
        if ch == '"':
            inq = not inq
        if not inq and ch in "({":
            depth += 1
        if not inq and ch in ")}":
            depth -= 1
        if ch == sep and depth == 0 and not inq:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def cstr(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def b(x):
    return "true" if x else "false"


def qual(q):
    return {"RW": "XAPI_Q_RW", "StaticRO": "XAPI_Q_STATIC_RO", "DynamicRO": "XAPI_Q_DYNAMIC_RO"}[q]


def write_if_changed(path, text):
    try:
        with open(path) as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        pass
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main():
    schema = json.load(open(sys.argv[1]))
    relations = json.load(open(sys.argv[2]))["relations"]
    roles = json.load(open(sys.argv[3]))["classes"]
    for cls in roles.values():
        for r in [cls.get("default")] + list(cls.get("implicit", {}).values()) + [
                r for keys in cls.get("map_keys", {}).values() for r in keys.values()]:
            assert r is None or r in ROLES, "unknown role %s" % r
    os.makedirs(sys.argv[4], exist_ok=True)
    Gen(schema, relations, roles).run(sys.argv[4])


if __name__ == "__main__":
    main()
