"""Records for the tests: app.Order FlatBuffers built with the flatc --python classes, tagged
sequence records, and byte patterns that can be checked byte for byte."""

import hashlib
import struct

import flatbuffers
from app import Order  # flatc --python examples/schema/order.fbs (PYTHONPATH, see CMakeLists)

TAG = struct.Struct("<IIQ")  # producer id, padding, sequence


def order(order_id, symbol="FLAT", quantity=1, blob=b""):
    b = flatbuffers.Builder(64 + len(blob))
    sym = b.CreateString(symbol)
    data = b.CreateByteVector(blob)
    Order.OrderStart(b)
    Order.OrderAddId(b, order_id)
    Order.OrderAddSymbol(b, sym)
    Order.OrderAddQuantity(b, quantity)
    Order.OrderAddBlob(b, data)
    Order.OrderAddChecksum(b, fnv1a(blob))
    b.Finish(Order.OrderEnd(b), file_identifier=b"ORDR")
    return bytes(b.Output())


def fnv1a(data):
    h = 0xCBF29CE484222325
    for c in data:
        h = ((h ^ c) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def read_order(buf):
    return Order.Order.GetRootAs(buf, 0)


def tag(producer, seq):
    return TAG.pack(producer, 0, seq)


def untag(buf):
    p, _, s = TAG.unpack_from(buf)
    return p, s


def pattern(size, seed=0):
    """`size` bytes derived from `seed` (a SHA-256 block repeated with the seed folded in)."""
    block = hashlib.sha256(b"%d" % seed).digest() * 128  # 4 KiB
    whole, rest = divmod(size, len(block))
    return block * whole + block[:rest]
