"""The core API in one process: rings of every mode, schemas in every form, the outcomes as
exceptions, zero-copy views and their lifetime, JSON, generated classes."""

import gc
import os

import pytest

import flatring
from helpers import order, read_order

MODES = ["spsc", "mpsc", "mpmc", "broadcast"]


@pytest.mark.parametrize("mode", MODES)
def test_create_open_remove_every_mode(name, mode):
    ring = flatring.create(name, capacity=1 << 16, mode=mode)
    assert (ring.name, ring.mode, ring.capacity) == (name, mode, 1 << 16)
    assert ring.max_record_size == (1 << 16) // 2 - 64
    assert ring.raw and ring.schema is None and ring.root_type is None
    assert flatring.exists(name) and name in flatring.list_rings()
    again = flatring.open(name, mode=mode)
    assert again.mode == mode and not again.created
    with pytest.raises(flatring.WrongMode):
        flatring.open(name, mode="spsc" if mode != "spsc" else "mpmc")
    with pytest.raises(flatring.AlreadyExists) as e:
        flatring.create(name, capacity=1 << 16, mode=mode)
    assert isinstance(e.value, FileExistsError) and e.value.code == "already_exists"
    assert flatring.remove(name)
    assert not flatring.remove(name)
    with pytest.raises(flatring.NotFound) as e:
        flatring.open(name)
    assert isinstance(e.value, FileNotFoundError)


@pytest.mark.parametrize("mode", MODES)
def test_send_receive_every_mode(name, mode):
    ring = flatring.create(name, capacity=1 << 16, mode=mode)
    rx = ring.consumer()  # broadcast: a consumer sees what is committed after it joined
    tx = ring.producer()
    tx.send(b"one")
    assert tx.try_send(bytearray(b"two"))
    tx.send(memoryview(b"xxthreexx")[2:7])
    assert tx.send_many([b"4", b"5", b"6"]) == 3
    assert rx.receive() == b"one"
    assert rx.receive(timeout=1) == b"two"
    assert rx.try_receive() == b"three"
    assert rx.receive_many(10, timeout=0) == [b"4", b"5", b"6"]
    assert rx.try_receive() is None
    assert rx.try_receive_many() == []
    with pytest.raises(flatring.Timeout) as e:
        rx.receive(timeout=0.05)
    assert isinstance(e.value, TimeoutError)
    with pytest.raises(ValueError):
        rx.receive(timeout=-1)


def test_try_send_full_and_too_large(name):
    ring = flatring.create(name, capacity=4096)
    tx = ring.producer()
    rx = ring.consumer()
    with pytest.raises(flatring.TooLarge):
        tx.send(b"x" * (ring.max_record_size + 1))
    n = 0
    while tx.try_send(b"y" * 100):
        n += 1
    assert n > 10
    with pytest.raises(flatring.Timeout):
        tx.send(b"y" * 100, timeout=0.05)
    assert rx.receive() == b"y" * 100
    assert tx.try_send(b"z" * 100)


def test_send_rejects_non_bytes(name):
    ring = flatring.create(name, capacity=4096)
    tx = ring.producer()
    with pytest.raises(TypeError):
        tx.send("text is not bytes")
    with pytest.raises(TypeError):
        tx.send_many([b"ok", 3])


def test_send_many_reports_what_was_sent(name):
    ring = flatring.create(name, capacity=4096)
    tx = ring.producer()
    ring.consumer()
    with pytest.raises(flatring.Timeout) as e:
        tx.send_many((b"q" * 200 for _ in range(1000)), timeout=0.05)
    assert 0 < e.value.sent < 1000


@pytest.mark.parametrize("form", ["fbs", "bfbs", "bfbs_path"])
def test_schema_forms(names, form, order_fbs, order_bfbs, tmp_path):
    if form == "fbs":
        schema = order_fbs
    elif form == "bfbs":
        schema = order_bfbs
    else:
        schema = tmp_path / "order.bfbs"
        schema.write_bytes(order_bfbs)
    name = names()
    ring = flatring.create(name, capacity=1 << 16, schema=schema)
    assert ring.root_type == "app.Order" and ring.file_identifier == "ORDR"
    assert ring.schema and not ring.raw
    assert flatring.open(name, schema=schema).root_type == "app.Order"
    rx = flatring.open(name).consumer()  # verifies with the ring's stored schema
    assert rx.verifies
    ring.producer().send(order(7, "ABC", 3, b"blob"))
    o = read_order(rx.receive())
    blob = bytes(o.Blob(i) for i in range(o.BlobLength()))
    assert (o.Id(), o.Symbol(), o.Quantity(), blob) == (7, b"ABC", 3, blob)
    assert blob == b"blob"


def test_wrong_schema_at_open(names, order_fbs):
    other = os.path.join(os.environ.get("FLATRING_SOURCE_DIR", "../.."), "tests/schema/test_other.fbs")
    n = names()
    flatring.create(n, capacity=1 << 16, schema=order_fbs)
    with pytest.raises(flatring.WrongSchema) as e:
        flatring.open(n, schema=other)
    assert isinstance(e.value, flatring.SchemaError) and e.value.code == "wrong_schema"
    raw = names()
    flatring.create(raw, capacity=1 << 16)
    with pytest.raises(flatring.WrongSchema):
        flatring.open(raw, schema=order_fbs)
    with pytest.raises(flatring.SchemaError) as e:
        flatring.create(names(), schema=b"not a binary schema")
    assert e.value.code == "corrupt_schema"
    with pytest.raises(flatring.SchemaError):
        flatring.create(names(), schema="/nonexistent/schema.fbs")
    with pytest.raises(TypeError):
        flatring.create(names(), schema=42)


def test_invalid_arguments(name):
    with pytest.raises(flatring.InvalidArgument) as e:
        flatring.create("bad/name")
    assert isinstance(e.value, ValueError)
    with pytest.raises(flatring.InvalidArgument):
        flatring.create(name, capacity=1000)
    with pytest.raises(ValueError):
        flatring.create(name, mode="lifo")


def test_role_taken(name):
    ring = flatring.create(name, capacity=4096)
    p = ring.producer()
    with pytest.raises(flatring.RoleTaken):
        ring.producer()
    assert not p.closed
    c = ring.consumer()
    with pytest.raises(flatring.RoleTaken):
        ring.consumer()
    c.close()
    ring.consumer()  # the role is free again


def test_garbage_record_mid_stream(name, order_fbs):
    ring = flatring.create(name, capacity=1 << 16, schema=order_fbs)
    tx, rx = ring.producer(), ring.consumer()
    tx.send(order(1))
    tx.send(b"\xff" * 40)  # not an Order
    tx.send(order(3))
    tx.send(b"\x01\x02")
    tx.send(order(5))
    assert read_order(rx.receive()).Id() == 1
    with pytest.raises(flatring.VerifyError) as e:
        rx.receive()
    assert e.value.code == "verify_failed"
    assert read_order(rx.receive()).Id() == 3
    with pytest.raises(flatring.VerifyError):
        rx.receive_view()
    v = rx.receive_view()
    assert read_order(v).Id() == 5
    assert rx.rejected == 2
    assert ring.stats()["verify_failures"] == 2


def test_garbage_in_a_batch_loses_nothing(name, order_fbs):
    ring = flatring.create(name, capacity=1 << 16, schema=order_fbs)
    tx, rx = ring.producer(), ring.consumer()
    tx.send_many([order(1), order(2), b"junk" * 4, order(4)])
    assert [read_order(b).Id() for b in rx.receive_many(10)] == [1, 2]
    with pytest.raises(flatring.VerifyError):
        rx.receive_many(10)
    assert [read_order(b).Id() for b in rx.receive_many(10)] == [4]
    assert rx.rejected == 1


def test_json_round_trip(name, order_fbs):
    ring = flatring.create(name, capacity=1 << 16, schema=order_fbs)
    tx, rx = ring.producer(), ring.consumer()
    tx.send_json('{"id": 42, "symbol": "XYZ", "quantity": 9, "blob": [1, 2, 3]}')
    tx.send_json('{"id": 43}')
    o = read_order(rx.receive())
    assert (o.Id(), o.Symbol(), o.Quantity(), o.BlobLength()) == (42, b"XYZ", 9, 3)
    text = rx.receive_json()
    assert '"id": 43' in text
    import json

    assert json.loads(text)["id"] == 43
    with pytest.raises(ValueError):
        tx.send_json('{"id": "not a number"}')
    with pytest.raises(ValueError):
        tx.send_json('{"no_such_field": 1}')
    tx.send(b"junk" * 8)
    with pytest.raises(flatring.VerifyError):
        rx.receive_json()


def test_json_needs_a_schema(name):
    ring = flatring.create(name, capacity=4096)
    with pytest.raises(flatring.WrongSchema):
        ring.producer().send_json("{}")
    with pytest.raises(flatring.WrongSchema):
        ring.consumer().receive_json(timeout=0)


def test_generated_classes_on_bytes_and_views(name, order_bfbs):
    ring = flatring.create(name, capacity=1 << 16, schema=order_bfbs)
    tx, rx = ring.producer(), ring.consumer()
    tx.send(order(1, "AAA", 5, b"\x00\x01\x02"))
    tx.send(order(2, "BBB", 6))
    b = rx.receive()
    assert isinstance(b, bytes)
    o = read_order(b)
    assert (o.Id(), o.Symbol(), o.Quantity(), o.Blob(2)) == (1, b"AAA", 5, 2)
    v = rx.receive_view()
    assert isinstance(v, memoryview) and v.readonly
    o2 = read_order(v)
    assert (o2.Id(), o2.Symbol()) == (2, b"BBB")
    rx.release()
    with pytest.raises(ValueError):
        o2.Id()  # the view was released with the record: reading it raises


def test_memoryview_lifetime(name):
    ring = flatring.create(name, capacity=1 << 16)
    tx, rx = ring.producer(), ring.consumer()
    for i in range(4):
        tx.send(b"record %d" % i)
    v = rx.receive_view()
    assert bytes(v) == b"record 0"
    with pytest.raises(TypeError):
        v[0] = 1  # read-only
    s = v[7:]  # a slice shares the record's memory
    with pytest.raises(BufferError):
        rx.receive()
    assert bytes(s) == b"0"  # still the old record: nothing moved
    del s
    assert rx.receive() == b"record 1"  # releases the view
    with pytest.raises(ValueError):
        v[0]
    with pytest.raises(ValueError):
        bytes(v)
    # a view released by its with block
    with rx.receive_view() as v2:
        assert bytes(v2) == b"record 2"
    with pytest.raises(ValueError):
        len(v2)
    v3 = rx.receive_view()
    m = memoryview(v3)  # a view of the view: also tracked
    with pytest.raises(BufferError):
        rx.release()
    m.release()
    rx.release()
    with pytest.raises(ValueError):
        v3.tobytes()
    # a dropped view needs no release
    tx.send(b"five")
    rx.receive_view()
    gc.collect()
    assert rx.try_receive() is None


def test_views_keep_the_consumer_and_mapping_alive(name):
    ring = flatring.create(name, capacity=1 << 16)
    tx, rx = ring.producer(), ring.consumer()
    tx.send(b"kept")
    v = rx.receive_view()
    s = v[:]
    del rx, ring
    gc.collect()
    assert bytes(s) == b"kept"  # the slice keeps the consumer (and the mapping) alive
    with pytest.raises(flatring.RoleTaken):
        flatring.open(name).consumer()  # the record is still held by that consumer
    del v, s
    gc.collect()
    assert flatring.open(name).consumer().receive(timeout=0) == b"kept"  # never released: again


def test_close_and_context_managers(name):
    with flatring.create(name, capacity=4096) as ring:
        with ring.producer() as tx, ring.consumer() as rx:
            tx.send(b"a")
            assert rx.receive() == b"a"
        assert tx.closed and rx.closed
        with pytest.raises(flatring.Closed) as e:
            tx.send(b"b")
        assert isinstance(e.value, ValueError) and isinstance(e.value, OSError)
        with pytest.raises(flatring.Closed):
            rx.receive(timeout=0)
    assert not flatring.exists(name)  # the with block of the creating handle removes it


def test_closing_with_a_live_view_is_refused(name):
    ring = flatring.create(name, capacity=4096)
    tx, rx = ring.producer(), ring.consumer()
    tx.send(b"abc")
    v = rx.receive_view()
    s = v[1:]
    with pytest.raises(BufferError):
        rx.close()
    assert bytes(s) == b"bc"
    del s
    rx.close()
    with pytest.raises(ValueError):
        v[0]


def test_peer_dead_after_producer_closes(name):
    ring = flatring.create(name, capacity=4096)
    tx, rx = ring.producer(), ring.consumer()
    tx.send(b"last")
    tx.close()
    assert rx.receive() == b"last"
    with pytest.raises(flatring.PeerDead) as e:
        rx.receive(timeout=5)
    assert isinstance(e.value, EOFError) and isinstance(e.value, BrokenPipeError)


def test_exception_hierarchy():
    assert issubclass(flatring.NotFound, FileNotFoundError)
    assert issubclass(flatring.Timeout, TimeoutError)
    assert issubclass(flatring.PeerDead, EOFError)
    assert issubclass(flatring.NoConsumer, flatring.PeerDead)
    for cls in (flatring.VerifyError, flatring.WrongSchema, flatring.CorruptRing, flatring.RoleTaken):
        assert issubclass(cls, flatring.Error)
    assert flatring.VerifyError.__module__ == "flatring"


def test_ring_peers_and_stats(name):
    ring = flatring.create(name, capacity=4096, mode="mpmc")
    tx = ring.producer()
    rx = ring.consumer()
    tx.send(b"x")
    rx.receive()
    peers = ring.peers()
    assert sorted(p["role"] for p in peers) == ["consumer", "producer"]
    assert all(p["pid"] == os.getpid() and p["alive"] for p in peers)
    assert tx.slot_pid == os.getpid() == rx.slot_pid
    s = ring.stats()
    assert s["records_written"] == 1 and s["records_read"] == 1
