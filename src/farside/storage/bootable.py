"""A RAW test disk whose boot sector proves a VM boots, runs, pauses, resumes and powers off.

``write_bootable`` writes an image that any x86 BIOS (SeaBIOS under QEMU's ``pc`` machine) boots
without an OS. Its boot sector is the 16-bit real-mode program in ``BOOT_ASM``, which:

1. reads sector 1 with INT 13h AH=02 from the drive BIOS booted (DL), and prints
   ``BOOT <tag>\r\n`` on COM1 (port 0x3F8, waiting for THRE, bit 0x20 of port 0x3FD, before each
   byte);
2. every 2 BIOS ticks (0040:006C, 18.2 Hz: about 110 ms) prints ``TICK <n>\r\n``, n counting from
   1. The count lives in guest memory, so a paused, resumed or migrated guest carries on counting;
   only a reboot starts again at 1. Between polls it waits in ``hlt``, so it costs almost no CPU;
3. when the tag sector's counter flag is set, writes the count to sector 3 with INT 13h AH=03 at
   every tick, so the host can see progress on the disk itself (``read_counter``);
4. finds the PIIX4 PM I/O base in PCI config space (device 00:01.3, offset 0x40, through ports
   0xCF8/0xCFC; SeaBIOS puts it at 0x600), sets PWRBTN_EN, and when the ACPI power button is pressed
   (QMP ``system_powerdown``) prints ``POWEROFF\r\n`` and writes SLP_EN with SLP_TYP 0 to PM1
   control: QEMU exits with status 0 and a SHUTDOWN event. A press before the guest has set
   PWRBTN_EN is dropped by QEMU, so whoever presses should retry. On a machine without a PIIX4 PM
   function (q35) the guest has no power button and only ticks.

Disk layout, in 512-byte sectors (the rest of the image is a hole):

- sector 0: the boot code (``BOOT_CODE``, always the same bytes), zero padding, 0x55 0xAA.
- sector 1, the tag sector: bytes 0-3 ``b"FSTG"``; byte 4 flags (bit 0: write the counter);
  byte 5 the tag's length n (1-200); bytes 6 to 6+n-1 the tag, printable ASCII; then zeros (so
  the tag is also NUL-terminated, which is how the boot code reads it).
- sector 2: zeros.
- sector 3, the counter sector: bytes 0-3 the tick count as a little-endian unsigned 32-bit
  integer; bytes 4-7 ``b"FSCT"``; then zeros. An image made with ``counter=True`` starts with
  count 0 and the magic; one made without has zeros here, and the guest never writes it.
  Each write replaces the whole sector, so a reader sees either the old or the new count.

The boot code was assembled with nasm 2.16 (``nasm -f bin``) from ``BOOT_ASM``, which is the source
of truth; nothing here needs nasm at run time. To change the code, edit ``BOOT_ASM`` and paste the
new bytes into ``BOOT_CODE``: the unit test re-assembles the listing when nasm is installed, and
on a mismatch prints the literal to paste.
"""

from __future__ import annotations

import struct
from pathlib import Path

SECTOR = 512
MIB = 1024 * 1024
TAG_SECTOR = 1
COUNTER_SECTOR = 3
TAG_MAGIC = b"FSTG"
COUNTER_MAGIC = b"FSCT"
FLAG_COUNTER = 0x01
MAX_TAG = 200
# Printable ASCII: the guest sends the tag to a serial port byte for byte.
_PRINTABLE = frozenset(range(0x20, 0x7F))

BOOT_ASM = r"""; Farside's test boot sector: BIOS loads it at 0000:7C00 with DL = boot drive.
bits 16
org 0x7C00

TAG_BUF   equ 0x7E00          ; sector 1 (LBA 1) is read here
TAG_FLAGS equ TAG_BUF + 4     ; byte: bit 0 set = write the counter to LBA 3
TAG_TEXT  equ TAG_BUF + 6     ; the tag, NUL-terminated
CTR_BUF   equ 0x8000          ; what goes to sector 3 (LBA 3): dword count, then "FSCT"
DRIVE     equ 0x0600          ; byte: the boot drive BIOS passed in DL
PMBASE    equ 0x0602          ; word: PIIX4 PM I/O base, 0 if there is none
LAST      equ 0x0604          ; dword: BIOS tick count at the last TICK
TICKS     equ 0x046C          ; dword: BIOS tick count (0040:006C), 18.2 Hz
COM1      equ 0x3F8           ; data port; line status is COM1 + 5
PCI_ADDR  equ 0xCF8
PCI_DATA  equ 0xCFC
PM_DEV    equ 0x80000B00      ; PCI config address of bus 0, device 1, function 3
PIIX4_PM  equ 0x71138086      ; its device and vendor ID

start:
    jmp 0:.cs0                ; normalise CS:IP to 0000:7C00
.cs0:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    sti
    cld
    mov [DRIVE], dl

    ; Zero the counter sector and the PM base; stamp the counter magic.
    mov di, CTR_BUF
    mov cx, 256
    rep stosw                 ; AX is still 0
    mov [PMBASE], ax
    mov dword [CTR_BUF + 4], 'FSCT'

    ; Read the tag sector: INT 13h AH=02, 1 sector, C=0 H=0 S=2 (LBA 1) to ES:BX.
    mov ax, 0x0201
    mov cx, 0x0002
    xor dh, dh
    mov bx, TAG_BUF
    int 0x13
    jc disk_error

    mov si, msg_boot          ; "BOOT <tag>\r\n"
    call puts
    mov si, TAG_TEXT
    call puts
    mov si, msg_crlf
    call puts

    ; The ACPI power button: find the PIIX4 PM I/O base in PCI config space.
    mov eax, PM_DEV           ; offset 0: vendor and device ID
    mov dx, PCI_ADDR
    out dx, eax
    mov dl, PCI_DATA & 0xFF
    in eax, dx
    cmp eax, PIIX4_PM
    jne .no_pm                ; not a PIIX4 (q35, or no device): no button
    mov eax, PM_DEV + 0x40    ; offset 0x40: PMBA, the PM I/O base
    mov dl, PCI_ADDR & 0xFF
    out dx, eax
    mov dl, PCI_DATA & 0xFF
    in eax, dx
    and ax, 0xFFC0            ; bits 15:6 are the base; bit 0 only says "I/O space"
    jz .no_pm
    mov [PMBASE], ax
    xchg dx, ax
    inc dx
    inc dx                    ; PM1 enable at base + 2
    mov ax, 0x0100            ; PWRBTN_EN
    out dx, ax
.no_pm:
    mov eax, [TICKS]
    mov [LAST], eax

idle:
    hlt                       ; sleep until the next interrupt (the timer, at the latest)
    mov dx, [PMBASE]
    test dx, dx
    jz .tick
    in ax, dx                 ; PM1 status at base + 0
    test ah, 0x01             ; PWRBTN_STS (bit 8)
    jz .tick
    mov si, msg_poweroff
    call puts                 ; keeps DX, the PM base
    add dx, 4                 ; PM1 control at base + 4
    mov ax, 0x2000            ; SLP_EN with SLP_TYP 0: soft off
    out dx, ax
    jmp halt

.tick:
    mov eax, [TICKS]
    mov ebx, eax
    sub eax, [LAST]
    cmp eax, 2                ; 2 ticks, about 110 ms (a midnight wrap ticks once early)
    jb idle
    mov [LAST], ebx
    inc dword [CTR_BUF]
    mov si, msg_tick          ; "TICK <n>\r\n"
    call puts
    mov eax, [CTR_BUF]
    call putdec
    mov si, msg_crlf
    call puts
    test byte [TAG_FLAGS], 1
    jz idle
    mov ax, 0x0301            ; INT 13h AH=03: write 1 sector, C=0 H=0 S=4 (LBA 3)
    mov cx, 0x0004
    xor dh, dh
    mov dl, [DRIVE]
    mov bx, CTR_BUF
    int 0x13                  ; a failed write is ignored: the next tick tries again
    jmp idle

disk_error:
    mov si, msg_disk_error
    call puts
halt:
    cli
    hlt
    jmp halt

; puts: print the NUL-terminated string at DS:SI. Clobbers AL, SI.
puts:
    lodsb
    test al, al
    jz .done
    call putc
    jmp puts
.done:
    ret

; putc: print AL on COM1 once the transmit holding register is empty. Keeps all registers.
putc:
    push dx
    push ax
    mov dx, COM1 + 5          ; line status register
.wait:
    in al, dx
    test al, 0x20             ; THRE
    jz .wait
    pop ax
    mov dl, COM1 & 0xFF       ; DH is already 0x03
    out dx, al
    pop dx
    ret

; putdec: print EAX as an unsigned decimal. Clobbers EAX, EBX, CX, EDX.
putdec:
    mov ebx, 10
    xor cx, cx
.divide:
    xor edx, edx
    div ebx
    push dx                   ; digits come out least significant first
    inc cx
    test eax, eax
    jnz .divide
.print:
    pop ax
    add al, '0'
    call putc
    loop .print
    ret

msg_boot:       db "BOOT ", 0
msg_tick:       db "TICK ", 0
msg_crlf:       db 13, 10, 0
msg_poweroff:   db "POWEROFF", 13, 10, 0
msg_disk_error: db "DISK ERROR", 13, 10, 0

code_end:
    times 510 - ($ - $$) db 0
    dw 0xAA55
"""

# ``nasm -f bin`` of BOOT_ASM up to ``code_end``; the padding and the signature are added by
# ``boot_sector``.
BOOT_CODE = (
    b"\xea\x05\x7c\x00\x00\xfa\x31\xc0\x8e\xd8\x8e\xc0\x8e\xd0\xbc\x00"
    b"\x7c\xfb\xfc\x88\x16\x00\x06\xbf\x00\x80\xb9\x00\x01\xf3\xab\xa3"
    b"\x02\x06\x66\xc7\x06\x04\x80\x46\x53\x43\x54\xb8\x01\x02\xb9\x02"
    b"\x00\x30\xf6\xbb\x00\x7e\xcd\x13\x0f\x82\xb5\x00\xbe\x34\x7d\xe8"
    b"\xb9\x00\xbe\x06\x7e\xe8\xb3\x00\xbe\x40\x7d\xe8\xad\x00\x66\xb8"
    b"\x00\x0b\x00\x80\xba\xf8\x0c\x66\xef\xb2\xfc\x66\xed\x66\x3d\x86"
    b"\x80\x13\x71\x75\x1d\x66\xb8\x40\x0b\x00\x80\xb2\xf8\x66\xef\xb2"
    b"\xfc\x66\xed\x83\xe0\xc0\x74\x0a\xa3\x02\x06\x92\x42\x42\xb8\x00"
    b"\x01\xef\x66\xa1\x6c\x04\x66\xa3\x04\x06\xf4\x8b\x16\x02\x06\x85"
    b"\xd2\x74\x15\xed\xf6\xc4\x01\x74\x0f\xbe\x43\x7d\xe8\x5c\x00\x83"
    b"\xc2\x04\xb8\x00\x20\xef\xeb\x4f\x66\xa1\x6c\x04\x66\x89\xc3\x66"
    b"\x2b\x06\x04\x06\x66\x83\xf8\x02\x72\xd0\x66\x89\x1e\x04\x06\x66"
    b"\xff\x06\x00\x80\xbe\x3a\x7d\xe8\x31\x00\x66\xa1\x00\x80\xe8\x45"
    b"\x00\xbe\x40\x7d\xe8\x24\x00\xf6\x06\x04\x7e\x01\x74\xac\xb8\x01"
    b"\x03\xb9\x04\x00\x30\xf6\x8a\x16\x00\x06\xbb\x00\x80\xcd\x13\xeb"
    b"\x99\xbe\x4e\x7d\xe8\x04\x00\xfa\xf4\xeb\xfc\xac\x84\xc0\x74\x05"
    b"\xe8\x03\x00\xeb\xf6\xc3\x52\x50\xba\xfd\x03\xec\xa8\x20\x74\xfb"
    b"\x58\xb2\xf8\xee\x5a\xc3\x66\xbb\x0a\x00\x00\x00\x31\xc9\x66\x31"
    b"\xd2\x66\xf7\xf3\x52\x41\x66\x85\xc0\x75\xf3\x58\x04\x30\xe8\xd5"
    b"\xff\xe2\xf8\xc3\x42\x4f\x4f\x54\x20\x00\x54\x49\x43\x4b\x20\x00"
    b"\x0d\x0a\x00\x50\x4f\x57\x45\x52\x4f\x46\x46\x0d\x0a\x00\x44\x49"
    b"\x53\x4b\x20\x45\x52\x52\x4f\x52\x0d\x0a\x00"
)


def boot_sector() -> bytes:
    """Sector 0: the boot code, padded, with the 0x55 0xAA signature."""
    return BOOT_CODE.ljust(SECTOR - 2, b"\0") + b"\x55\xaa"


def tag_sector(tag: str, counter: bool = False) -> bytes:
    """Sector 1 for ``tag``.

    Raises:
        ValueError: the tag is empty, longer than ``MAX_TAG``, or not printable ASCII.
    """
    if not tag or len(tag) > MAX_TAG:
        raise ValueError(f"a tag must be 1 to {MAX_TAG} characters long, not {len(tag)}")
    bad = sorted({c for c in tag if ord(c) not in _PRINTABLE})
    if bad:
        raise ValueError(f"a tag must be printable ASCII; {tag!r} has {', '.join(repr(c) for c in bad)}")
    flags = FLAG_COUNTER if counter else 0
    return (TAG_MAGIC + bytes([flags, len(tag)]) + tag.encode("ascii")).ljust(SECTOR, b"\0")


def counter_sector(count: int) -> bytes:
    """Sector 3 holding ``count``, as the guest writes it."""
    return (struct.pack("<I", count) + COUNTER_MAGIC).ljust(SECTOR, b"\0")


def write_bootable(path: Path, tag: str, size_mib: int = 1, counter: bool = False) -> None:
    """Write a new RAW image of ``size_mib`` MiB at ``path`` that boots, prints ``tag`` and ticks.

    Only the first sectors are written; the rest is left as a hole. ``path`` must not exist yet:
    an image that is someone's disk is never overwritten.

    Args:
        path: the image file to create.
        tag: what the guest prints after ``BOOT``: 1 to 200 printable ASCII characters.
        size_mib: the image's size in MiB, at least 1.
        counter: make the guest write its tick count to sector 3 at every tick.

    Raises:
        ValueError: a bad tag or size.
        OSError: the file exists already or cannot be written; nothing is left behind.
    """
    if size_mib < 1:
        raise ValueError(f"an image must be at least 1 MiB, not {size_mib}")
    head = boot_sector() + tag_sector(tag, counter) + bytes(SECTOR)
    if counter:
        head += counter_sector(0)
    with open(path, "xb") as f:
        try:
            f.write(head)
            f.truncate(size_mib * MIB)
        except BaseException:
            path.unlink(missing_ok=True)
            raise


def read_tag(path: Path) -> str | None:
    """The tag in an image's tag sector, or None if the image has no tag sector of ours."""
    with open(path, "rb") as f:
        f.seek(TAG_SECTOR * SECTOR)
        data = f.read(SECTOR)
    if len(data) < SECTOR or not data.startswith(TAG_MAGIC) or data[5] > MAX_TAG:
        return None
    return data[6 : 6 + data[5]].decode("ascii", errors="replace")


def read_counter(path: Path) -> int | None:
    """The tick count the guest last wrote to sector 3, or None if the sector holds no count.

    Reads the file directly, so it works while QEMU runs the image (its lock does not stop
    plain reads); the guest writes whole sectors, so the count is never torn.
    """
    with open(path, "rb") as f:
        f.seek(COUNTER_SECTOR * SECTOR)
        data = f.read(8)
    if len(data) < 8 or data[4:] != COUNTER_MAGIC:
        return None
    count: int = struct.unpack("<I", data[:4])[0]
    return count
