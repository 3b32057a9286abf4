"""The chdb HTTP server speaks ClickHouse's HTTP interface well enough for curl,
clickhouse-connect and the Rust `clickhouse` crate (the latter is tested in tests/it)."""

import base64
import gzip
import http.client
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import chdb
import clickhouse_connect
import lz4.block
import lz4.frame
import pytest

SERVER = Path(__file__).resolve().parents[1] / "chdb_http" / "server.py"
sys.path.insert(0, str(SERVER.parent))
import server as chdb_http  # noqa: E402  (for its block framing helpers)

PASSWORD = "s3cret"


@pytest.fixture(scope="module")
def port():
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--exit-on-stdin-eof", "--password", PASSWORD],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)\n", line)
    assert match, line
    yield int(match.group(1))
    proc.stdin.close()  # the server exits on stdin EOF
    assert proc.wait(timeout=30) == 0


def request(port, method="POST", body=None, headers=None, auth=True, **params):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = dict(headers or {})
    if auth:
        headers.setdefault("X-ClickHouse-Key", PASSWORD)
    conn.request(method, "/?" + urlencode(params), body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def client(port, **kw):
    return clickhouse_connect.get_client(host="127.0.0.1", port=port, password=PASSWORD, **kw)


def test_curl_select_1(port):
    out = subprocess.run(
        ["curl", "-sS", "-H", f"X-ClickHouse-Key: {PASSWORD}", f"http://127.0.0.1:{port}/?query=SELECT%201"],
        capture_output=True, check=True)
    assert out.stdout == b"1\n"


def test_ping_and_empty_get(port):
    assert request(port, "GET", auth=False)[1] == b"Ok.\n"
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/ping")
    assert conn.getresponse().read() == b"Ok.\n"


@pytest.mark.parametrize("compress", [False, True, "lz4", "gzip"])
def test_clickhouse_connect_command_query_insert(port, compress):
    c = client(port, compress=compress)
    table = f"cc_{compress}".lower()
    c.command(f"DROP TABLE IF EXISTS {table}")
    c.command(f"CREATE TABLE {table} (a UInt32, s String, m Map(String, String), n Nullable(String)) "
              "ENGINE = MergeTree ORDER BY a")
    rows = [[i, f"s'{i}\\", {"k": str(i)} if i % 2 else {}, None if i % 3 else f"n{i}"] for i in range(5000)]
    c.insert(table, rows, column_names=["a", "s", "m", "n"])  # Native format
    assert c.command(f"SELECT count() FROM {table}") == 5000
    got = c.query(f"SELECT a, s, m, n FROM {table} ORDER BY a").result_rows
    assert [list(r) for r in got] == rows
    assert c.query("SELECT {x:String}", parameters={"x": "it's \\ here"}).result_rows == [("it's \\ here",)]


def test_wrong_password_is_516(port):
    for headers, kw in [({"X-ClickHouse-Key": "nope"}, {}),
                        ({"Authorization": "Basic " + base64.b64encode(b"default:nope").decode()}, {}),
                        ({}, {"user": "default", "password": "nope"}),
                        ({"X-ClickHouse-User": "someone", "X-ClickHouse-Key": PASSWORD}, {})]:
        resp, body = request(port, body=b"SELECT 1", headers=headers, auth=False, **kw)
        assert resp.status == 403
        assert resp.headers["X-ClickHouse-Exception-Code"] == "516"
        assert b"(AUTHENTICATION_FAILED)" in body
    basic = "Basic " + base64.b64encode(f"default:{PASSWORD}".encode()).decode()
    assert request(port, body=b"SELECT 2", headers={"Authorization": basic}, auth=False)[1] == b"2\n"
    assert request(port, auth=False, query="SELECT 3", password=PASSWORD)[1] == b"3\n"
    with pytest.raises(Exception, match="516"):
        clickhouse_connect.get_client(host="127.0.0.1", port=port, password="nope").command("SELECT 1")


def test_error_format_and_status(port):
    resp, body = request(port, body=b"SELECT * FROM no_such_table")
    assert resp.status == 404
    assert resp.headers["X-ClickHouse-Exception-Code"] == "60"
    assert re.fullmatch(rb"Code: 60\. DB::Exception: .*no_such_table.*\(UNKNOWN_TABLE\) "
                        rb"\(version [\d.]+ \(official build\)\)\n", body), body
    resp, body = request(port, body=b"SELEC 1")
    assert (resp.status, resp.headers["X-ClickHouse-Exception-Code"]) == (400, "62")
    resp, body = request(port, body=b"SELECT 1", no_such_setting="1")
    assert resp.headers["X-ClickHouse-Exception-Code"] == "115"


def test_error_after_streaming_started_ends_the_body(port):
    resp, body = request(port, body=b"SELECT throwIf(number = 200000, 'boom') FROM numbers(300000)",
                         max_block_size="1000")
    assert resp.status == 200  # headers were sent before the error
    assert body.startswith(b"0\n0\n")
    assert re.search(rb"\nCode: 395\. DB::Exception: .*boom.*\)\)\n$", body), body[-300:]


def blocks(data):
    return b"".join(chdb_http.native_block(data[i:i + 100_000]) for i in range(0, len(data), 100_000))


def unblock(data):
    return b"".join(chdb_http.read_native_blocks([data]))


def test_native_compressed_framing_both_ways(port):
    request(port, body=b"CREATE TABLE framed (n UInt64, s String) ENGINE = MergeTree ORDER BY n")
    rows = b"".join(struct.pack("<QB", i, 3) + b"%03d" % (i % 1000) for i in range(100_000))
    resp, body = request(port, body=blocks(rows), decompress="1",
                         query="INSERT INTO framed FORMAT RowBinary")
    assert resp.status == 200, body
    assert json.loads(resp.headers["X-ClickHouse-Summary"])["written_rows"] == "100000"
    resp, body = request(port, body=b"SELECT n, s FROM framed ORDER BY n", compress="1",
                         default_format="RowBinary")
    assert unblock(body) == rows
    # A corrupted block is refused.
    bad = bytearray(blocks(rows[:1000]))
    bad[40] ^= 0xFF
    resp, body = request(port, body=bytes(bad), decompress="1", query="INSERT INTO framed FORMAT RowBinary")
    assert resp.headers["X-ClickHouse-Exception-Code"] == "40"


def test_http_content_encodings(port):
    sql = b"SELECT number FROM numbers(100000)"
    expected = b"".join(b"%d\n" % i for i in range(100_000))
    resp, body = request(port, body=sql, headers={"Accept-Encoding": "lz4"})
    assert resp.headers["Content-Encoding"] == "lz4"
    assert lz4.frame.decompress(body) == expected
    resp, body = request(port, body=sql, headers={"Accept-Encoding": "gzip"})
    assert gzip.decompress(body) == expected
    resp, body = request(port, body=lz4.frame.compress(sql), headers={"Content-Encoding": "lz4"})
    assert body == expected
    resp, body = request(port, body=gzip.compress(sql), headers={"Content-Encoding": "gzip"},
                         enable_http_compression="0")
    assert body == expected


def test_json_each_row_insert_and_inline_insert(port):
    request(port, body=b"CREATE TABLE j (a UInt8, s String) ENGINE = MergeTree ORDER BY a")
    data = b'{"a": 1, "s": "x"}\n{"a": 2, "s": "y\\"z"}\n'
    resp, _ = request(port, body=data, query="INSERT INTO j FORMAT JSONEachRow")
    assert resp.status == 200
    resp, _ = request(port, body=b"INSERT INTO j FORMAT CSV\n3,w\n")
    assert resp.status == 200
    resp, _ = request(port, body=b"(4, 'v')", query="INSERT INTO j VALUES")
    assert resp.status == 200
    _, body = request(port, body=b"SELECT * FROM j ORDER BY a FORMAT JSONEachRow")
    assert body == (b'{"a":1,"s":"x"}\n{"a":2,"s":"y\\"z"}\n{"a":3,"s":"w"}\n{"a":4,"s":"v"}\n')


def test_streamed_with_names_and_types_formats_have_one_header(port):
    sql = "SELECT number, toString(number) AS s FROM numbers(200000)"
    for fmt in ["RowBinaryWithNamesAndTypes", "TSVWithNamesAndTypes", "CSVWithNames",
                "JSONCompactEachRowWithNamesAndTypes", "Native", "JSON"]:
        _, body = request(port, body=sql.encode(), default_format=fmt)
        assert body == bytes(chdb.query(sql, fmt).bytes()) or fmt in ("Native", "JSON"), fmt
        if fmt == "JSON":
            assert json.loads(body)["rows"] == 200000


def test_multipart_query_params_database_and_settings(port):
    boundary = "xYzZY"
    fields = {"query": "SELECT {a:String}, {b:UInt8} + 1", "param_a": "q'\\t", "param_b": "41"}
    body = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   for k, v in fields.items()) + f"--{boundary}--\r\n"
    resp, data = request(port, body=body.encode(),
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert data == b"q\\'\\t\t42\n", data
    assert request(port, query="SELECT {x:Int32} * 2", param_x="21")[1] == b"42\n"
    request(port, body=b"CREATE DATABASE IF NOT EXISTS other")
    assert request(port, body=b"SELECT currentDatabase()", database="other")[1] == b"other\n"
    assert request(port, body=b"SELECT currentDatabase()",
                   headers={"X-ClickHouse-Database": "other"})[1] == b"other\n"
    assert request(port, body=b"SELECT getSetting('max_threads')", max_threads="3")[1] == b"3\n"
    resp, data = request(port, body=b"SELECT 1", default_format="JSONEachRow", query_id="q-1",
                         wait_end_of_query="1", session_id="s", compress="0")
    assert data == b'{"1":1}\n'
    assert resp.headers["X-ClickHouse-Query-Id"] == "q-1"


def test_keep_alive_connection_serves_many_requests(port):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(50):
        conn.request("POST", "/", body=f"SELECT {i}", headers={"X-ClickHouse-Key": PASSWORD})
        assert conn.getresponse().read() == f"{i}\n".encode()
    conn.request("POST", "/", body="SELECT nope", headers={"X-ClickHouse-Key": PASSWORD})
    resp = conn.getresponse()
    assert (resp.status, resp.read()[:8]) == (404, b"Code: 47")
    conn.request("POST", "/", body="SELECT 7", headers={"X-ClickHouse-Key": PASSWORD})
    assert conn.getresponse().read() == b"7\n"


def test_client_hanging_up_mid_stream_leaves_the_server_working(port):
    import socket
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", port))
        sql = b"SELECT number, repeat('x', 100) FROM numbers(100000000)"
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-ClickHouse-Key: %s\r\nContent-Length: %d\r\n\r\n%s"
                     % (PASSWORD.encode(), len(sql), sql))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.close()
    assert request(port, body=b"SELECT 42")[1] == b"42\n"


def test_parallel_requests(port):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: request(port, body=f"SELECT sum(number) + {i} FROM numbers(1000000)".encode())[1],
                                range(32)))
    assert results == [b"%d\n" % (499999500000 + i) for i in range(32)]


def test_bad_insert_data_is_an_error_and_the_connection_stays_usable(port):
    request(port, body=b"CREATE TABLE bad (a UInt8, s String) ENGINE = MergeTree ORDER BY a")
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"X-ClickHouse-Key": PASSWORD}
    body = b"1,ok\n" * 100_000 + b"oops,x\n" + b"2,ok\n" * 100_000
    conn.request("POST", "/?" + urlencode({"query": "INSERT INTO bad FORMAT CSV"}), body=body, headers=headers)
    resp = conn.getresponse()
    text = resp.read()
    assert (resp.status, resp.headers["X-ClickHouse-Exception-Code"]) == (400, "27"), text
    assert b"(CANNOT_PARSE_INPUT_ASSERTION_FAILED)" in text
    conn.request("POST", "/", body="SELECT 5", headers=headers)
    assert conn.getresponse().read() == b"5\n"
