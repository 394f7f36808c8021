"""LZF decompression (the codec of PCD's ``DATA binary_compressed``), written from the format description.

An LZF stream is a sequence of chunks, each led by a control byte ``c``:
  c < 32   a literal run: the next c + 1 bytes are copied to the output;
  c >= 32  a back-reference: length L = c >> 5 (if L == 7, the next byte is added to it), then one more byte
           b; copy L + 2 bytes starting ((c & 31) << 8) + b + 1 bytes back in the output (runs may overlap
           the bytes they produce, which repeats the last period).
The caller gives the expected output size; every read and write is checked against it, so a damaged stream is a
ValueError, never an over-long output or an index error.
"""

from __future__ import annotations

# A 3-byte back-reference produces at most 7 + 255 + 2 = 264 bytes: no valid stream expands more than that.
MAX_RATIO = 88


def lzf_decompress(src: bytes, out_size: int) -> bytes:
    """Decompress ``src`` into exactly ``out_size`` bytes; ValueError if the stream does not decode to that."""
    if out_size < 0:
        raise ValueError(f"negative output size {out_size}")
    if out_size > MAX_RATIO * len(src) + 1:
        raise ValueError(f"{len(src)} compressed bytes cannot expand to {out_size}")
    out = bytearray(out_size)
    ip, op, n = 0, 0, len(src)
    while ip < n:
        ctrl = src[ip]
        ip += 1
        if ctrl < 32:
            run = ctrl + 1
            if ip + run > n:
                raise ValueError(f"literal run of {run} bytes at input byte {ip - 1} passes the end of the input")
            if op + run > out_size:
                raise ValueError(f"output grows past the declared {out_size} bytes")
            out[op : op + run] = src[ip : ip + run]
            ip += run
            op += run
            continue
        length = ctrl >> 5
        if length == 7:
            if ip >= n:
                raise ValueError("input ends inside a back-reference")
            length += src[ip]
            ip += 1
        if ip >= n:
            raise ValueError("input ends inside a back-reference")
        ref = op - ((ctrl & 0x1F) << 8) - src[ip] - 1
        ip += 1
        length += 2
        if ref < 0:
            raise ValueError(f"back-reference before the start of the output at output byte {op}")
        if op + length > out_size:
            raise ValueError(f"output grows past the declared {out_size} bytes")
        if ref + length <= op:
            out[op : op + length] = out[ref : ref + length]
        else:  # overlapping copy: the bytes between ref and op repeat
            period = out[ref:op]
            out[op : op + length] = (period * (length // len(period) + 1))[:length]
        op += length
    if op != out_size:
        raise ValueError(f"stream decodes to {op} bytes, the header declares {out_size}")
    return bytes(out)
