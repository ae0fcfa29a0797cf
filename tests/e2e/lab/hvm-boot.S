/* The lab's small HVM guest: one boot sector, for the e2e suite's hvm-disk-boot and hvm-cd-boot
 * steps (tests/e2e/steps_hvm.py). setup.sh assembles it twice: as the MBR of hvm-boot.img and,
 * with --defsym CD=1, as the no-emulation El Torito image of iso/xenlab-hvm-boot.iso.
 *
 * Why not Linux behind syslinux/isolinux (hvm-disk.img, xenlab-guest.iso, the opt-in *-linux
 * steps): under the lab's nested TCG every sector SeaBIOS reads is a few round trips guest -> Xen
 * -> QEMU in dom0 (IDE/ATAPI programmed I/O: ~3 per 2 KiB), and the lab's 8 MiB kernel and its
 * initramfs are ~14,000 of them: the CD guest reached /init ~150 s after VM.start on a quiet host,
 * not within 300 s beside another lab. What the steps check is xenapid's (the VBDs and the boot
 * order libxl gets, the BIOS booting from that device, QEMU's serial port through CONNECT
 * /console, the VNC server, the platform keys); this guest shows the same in a few traps.
 *
 * On COM1 (115200 8N1), as guest-init.sh prints them:
 *   XENLAB-GUEST-UP
 *   XENLAB-KERNEL: xenlab-hvm-boot
 *   XENLAB-CMDLINE: xenlab.boot=disk|cd xenlab.bootdrive=0xNN   (NN: DL from the BIOS)
 * again every ~5 s until the first byte comes in (a console opened late still sees them), then
 *   XENLAB-ECHO <line>      for each line typed (CR or LF ends it)
 * It waits in hlt for COM1's receive interrupt (IRQ4): an idle guest makes no traps. */
	.code16
	.text
	.globl	_start

	.equ	COM1, 0x3f8
	.equ	RXBUF, 0x8000		/* 64-byte ring filled by the IRQ4 handler */
	.equ	RXHEAD, 0x8040
	.equ	RXTAIL, 0x8041
	.equ	GOTINPUT, 0x8042
	.equ	DRIVE, 0x8043
	.equ	LAST, 0x8044		/* BIOS tick of the last banner */
	.equ	LINELEN, 0x8046
	.equ	LINE, 0x8100		/* up to LINEMAX bytes of the line being typed */
	.equ	LINEMAX, 120
	.equ	TICK, 0x46c		/* the BIOS's 18.2 Hz counter */

_start:
	cli
	ljmp	$0, $1f			/* an El Torito image may come in at 07c0:0000 */
1:	xor	%ax, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	$0x7c00, %sp
	cld
	mov	%dl, DRIVE
	movw	$0, RXHEAD		/* RXHEAD and RXTAIL */
	movb	$0, GOTINPUT
	movw	$0, LINELEN
	movw	$com1_irq, 0x0c * 4	/* IRQ4 is vector 0x0c (the BIOS's PIC base 8) */
	movw	$0, 0x0c * 4 + 2

	mov	$uart_init, %si		/* (port low byte, value) pairs for ports 0x3f8 + n */
2:	lodsw
	test	%ax, %ax
	jz	3f
	mov	$COM1, %dx
	add	%al, %dl
	mov	%ah, %al
	out	%al, %dx
	jmp	2b
3:	in	$0x21, %al		/* the master PIC: IRQ0 (the tick) and IRQ4 */
	and	$0xee, %al
	out	%al, $0x21
	sti

	call	banner
idle:	sti
	hlt				/* (sti's shadow: an interrupt before hlt still wakes it) */
	cli
	cmpb	$0, GOTINPUT
	jne	next
	mov	TICK, %ax
	sub	LAST, %ax
	cmp	$91, %ax		/* ~5 s */
	jb	next
	call	banner
next:	movzbw	RXTAIL, %bx
	cmp	RXHEAD, %bl
	je	idle
	mov	RXBUF(%bx), %al
	inc	%bl
	and	$63, %bl
	mov	%bl, RXTAIL
	cmpb	$0, GOTINPUT
	jne	4f
	movb	$1, GOTINPUT
	push	%ax
	in	$0x21, %al		/* no more banners: the tick is not needed, mask IRQ0 */
	or	$1, %al
	out	%al, $0x21
	pop	%ax
4:	cmp	$'\r', %al
	je	eol
	cmp	$'\n', %al
	je	eol
	mov	LINELEN, %bx
	cmp	$LINEMAX, %bx
	jae	next
	mov	%al, LINE(%bx)
	incw	LINELEN
	jmp	next
eol:	mov	LINELEN, %cx
	jcxz	next
	mov	$msg_echo, %si
	call	puts
	mov	$LINE, %si
5:	lodsb
	call	putc
	loop	5b
	mov	$msg_crlf, %si
	call	puts
	movw	$0, LINELEN
	jmp	next

banner:	mov	TICK, %ax
	mov	%ax, LAST
	mov	$msg_up, %si
	call	puts
	mov	DRIVE, %al
	shr	$4, %al
	call	puthex
	mov	DRIVE, %al
	call	puthex
	mov	$msg_crlf, %si
	jmp	puts

puthex:	and	$15, %al
	add	$'0', %al
	cmp	$'9', %al
	jbe	putc
	add	$'a' - '9' - 1, %al
	/* fall through */
putc:	push	%dx
	push	%ax
	mov	$COM1 + 5, %dx		/* LSR: wait for the transmitter */
6:	in	%dx, %al
	test	$0x20, %al
	jz	6b
	pop	%ax
	mov	$COM1, %dx
	out	%al, %dx
	pop	%dx
	ret

puts:	lodsb
	test	%al, %al
	jz	7f
	call	putc
	jmp	puts
7:	ret

com1_irq:
	push	%ax
	push	%bx
	push	%dx
	push	%ds
	xor	%ax, %ax
	mov	%ax, %ds
8:	mov	$COM1 + 5, %dx		/* LSR: data ready? */
	in	%dx, %al
	test	$1, %al
	jz	9f
	mov	$COM1, %dx
	in	%dx, %al
	movzbw	RXHEAD, %bx
	mov	%al, RXBUF(%bx)
	inc	%bl
	and	$63, %bl
	mov	%bl, RXHEAD
	jmp	8b
9:	mov	$0x20, %al		/* EOI */
	out	%al, $0x20
	pop	%ds
	pop	%dx
	pop	%bx
	pop	%ax
	iret

uart_init:				/* LCR DLAB, divisor 1 (115200), 8N1, FIFO on, DTR RTS OUT2, rx irq */
	.byte	3, 0x80, 0, 1, 1, 0, 3, 3, 2, 0x07, 4, 0x0b, 1, 1, 0, 0
msg_up:	.ascii	"\r\nXENLAB-GUEST-UP\r\nXENLAB-KERNEL: xenlab-hvm-boot\r\nXENLAB-CMDLINE: xenlab.boot="
.ifdef CD
	.ascii	"cd"
.else
	.ascii	"disk"
.endif
	.asciz	" xenlab.bootdrive=0x"
msg_echo:
	.asciz	"XENLAB-ECHO "
msg_crlf:
	.asciz	"\r\n"

	.org	510
	.word	0xaa55
