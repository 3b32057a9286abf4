#!/usr/bin/env python3
"""A ClickHouse HTTP interface served by chdb (in-process ClickHouse), for tests.

No ClickHouse server can run where the test suite runs, but chdb embeds the real
engine. This file only speaks the HTTP protocol; all SQL, formats, parsing and
storage are done by chdb. See README.md next to this file for what is covered.
"""

import argparse
import base64
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import lz4.block
import lz4.frame
from chdb import _chdb
from clickhouse_cityhash.cityhash import CityHash128

# URL parameters the real server consumes itself; everything else that is not
# `param_*` is a setting and is applied with SET (unknown ones fail with 115,
# as on a real server).
CLIENT_PARAMS = {
    "query", "database", "default_format", "user", "password", "quota_key", "query_id",
    "session_id", "session_timeout", "session_check", "compress", "decompress",
    "buffer_size", "wait_end_of_query", "role", "stacktrace", "client_protocol_version",
}
# clickhouse-local defaults that differ from a server's (a bare `SELEC` would run as `SELECT SELEC`).
SERVER_DEFAULTS = {"implicit_select": "0"}
# Formats whose per-chunk outputs concatenate into one valid output (after cutting
# the repeated header of *WithNames* variants). Others (JSON, Pretty, Parquet,
# Arrow, XML, Values...) are documents and are buffered whole.
STREAMABLE = re.compile(
    r"(tabseparated|tsv|csv|rowbinary|customseparated|jsoncompact(strings)?eachrow)"
    r"(raw)?(withnames(andtypes)?)?|native|jsoneachrow|jsonlines|ndjson|jsonstringseachrow"
    r"|lineasstring|rawblob|msgpack",
    re.I,
)
INSERT_RE = re.compile(
    r"^(?P<stmt>\s*INSERT\s.*?)(?:\bFORMAT\s+(?P<fmt>\w+)|\bVALUES)?\s*;?\s*$", re.I | re.S)
FORMAT_RE = re.compile(r"\bFORMAT\s+(\w+)\s*(?:SETTINGS\b[^;]*)?;?\s*$", re.I)
# Inline data starts after the first newline after the format name (or after the blanks).
INLINE_INSERT_RE = re.compile(
    rb"(\s*INSERT\s(?:(?!\bVALUES\b|\bSELECT\b).)*?\bFORMAT\s+\w+)[ \t\r]*\n?", re.I | re.S)
CODE_RE = re.compile(r"Code: (\d+)\. ")
MAX_BLOCK = 1 << 20  # the server's max_compress_block_size

# exceptionCodeToHTTPStatus() of the real server, keyed by error name.
STATUS_BY_NAME = {403: "UNKNOWN_USER WRONG_PASSWORD AUTHENTICATION_FAILED SET_NON_GRANTED_ROLE",
                  401: "REQUIRED_PASSWORD",
                  400: "BAD_ARGUMENTS CANNOT_COMPILE_REGEXP CANNOT_PARSE_TEXT CANNOT_PARSE_ESCAPE_SEQUENCE "
                       "CANNOT_PARSE_QUOTED_STRING CANNOT_PARSE_DATE CANNOT_PARSE_DATETIME CANNOT_PARSE_NUMBER "
                       "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING CANNOT_PARSE_IPV4 CANNOT_PARSE_IPV6 "
                       "CANNOT_PARSE_INPUT_ASSERTION_FAILED CANNOT_PARSE_UUID DUPLICATE_COLUMN ILLEGAL_COLUMN "
                       "UNKNOWN_ELEMENT_IN_AST UNKNOWN_TYPE_OF_AST_NODE THERE_IS_NO_COLUMN TOO_DEEP_AST "
                       "TOO_BIG_AST UNEXPECTED_AST_STRUCTURE SYNTAX_ERROR INCORRECT_DATA TYPE_MISMATCH "
                       "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
                  404: "UNKNOWN_TABLE UNKNOWN_FUNCTION UNKNOWN_IDENTIFIER UNKNOWN_TYPE UNKNOWN_STORAGE "
                       "UNKNOWN_DATABASE UNKNOWN_SETTING UNKNOWN_DIRECTION_OF_SORTING "
                       "UNKNOWN_AGGREGATE_FUNCTION UNKNOWN_FORMAT UNKNOWN_DATABASE_ENGINE "
                       "UNKNOWN_TYPE_OF_QUERY UNKNOWN_ROLE",
                  413: "QUERY_IS_TOO_LARGE", 501: "NOT_IMPLEMENTED", 411: "HTTP_LENGTH_REQUIRED",
                  408: "TIMEOUT_EXCEEDED", 503: "SOCKET_TIMEOUT CANNOT_OPEN_FILE CANNOT_SCHEDULE_TASK"}


class CHError(Exception):
    """An error to report in ClickHouse's format: `Code: N. DB::Exception: ... (NAME)`."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message

    @classmethod
    def wrap(cls, exc):
        text = str(exc)
        # The Python wrappers prefix chdb's message; keep the ClickHouse part.
        m = CODE_RE.search(text)
        if not m:
            return cls(1001, f"Code: 1001. DB::Exception: {text}. (STD_EXCEPTION)")
        return cls(int(m.group(1)), text[m.start():])

    def body(self):
        # Real servers end the text with `(version X (official build))\n`; the Rust
        # crate even relies on the `))\n` ending to spot errors inside a stream.
        text = re.sub(r"\s*\(version [^()]*\)\s*$", "", self.message.strip())
        return f"{text} (version {ENGINE.version} (official build))\n".encode()


class Engine:
    """The chdb engine of this process: one data directory, any number of connections."""

    def __init__(self, path):
        self.path = path
        self.keepalive = _chdb.connect(path)  # the engine lives while a connection is open
        first = bytes(self.keepalive.query("SELECT version(), timezone()", "TSV").bytes())
        self.version, self.timezone = first.decode().strip().split("\t")
        names = bytes(self.keepalive.query(
            "SELECT number, errorCodeToName(number) FROM numbers(1500)", "TSV").bytes())
        codes = {n: int(c) for c, n in (line.split("\t") for line in names.decode().splitlines())}
        self.status = {codes[n]: st for st, ns in STATUS_BY_NAME.items() for n in ns.split() if n in codes}

    def connect(self):
        # A connection per request is cheap (~0.1 ms) and isolates USE/SET per request.
        return _chdb.connect(self.path)


ENGINE = None  # set in main()


def checksum(block):
    # CityHash128 (v1.0.2) of header+data; on the wire, the high 64 bits of this
    # package's result come first (checked against the Rust crate and real servers).
    h = CityHash128(block)
    return struct.pack("<QQ", h >> 64, h & 0xFFFFFFFFFFFFFFFF)


def read_native_blocks(chunks):
    """Decode ClickHouse's compressed block framing (`decompress=1` request bodies)."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        while len(buf) >= 25:
            method, csize, usize = struct.unpack_from("<BII", buf, 16)
            if len(buf) < 16 + csize:
                break
            expected, block, buf = buf[:16], buf[16:16 + csize], buf[16 + csize:]
            if checksum(block) != expected:
                raise CHError(40, "Code: 40. DB::Exception: Checksum doesn't match: corrupted data. "
                                  "(CHECKSUM_DOESNT_MATCH)")
            if method == 0x82:
                yield lz4.block.decompress(block[9:], uncompressed_size=usize)
            elif method == 0x02:
                yield block[9:]
            else:
                raise CHError(89, f"Code: 89. DB::Exception: Unknown compression method: {method:#x}. "
                                  "(UNKNOWN_COMPRESSION_METHOD)")
    if buf:
        raise CHError(32, "Code: 32. DB::Exception: Attempt to read after eof: truncated compressed "
                          "block. (ATTEMPT_TO_READ_AFTER_EOF)")


def native_block(data):
    block = struct.pack("<BII", 0x82, 0, len(data)) + lz4.block.compress(data, store_size=False)
    block = block[:1] + struct.pack("<I", len(block)) + block[5:]
    return checksum(block) + block


def decode_content(chunks, encoding):
    """Undo an HTTP Content-Encoding of a request body, chunk by chunk."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        yield from chunks
    elif encoding in ("gzip", "deflate", "x-gzip"):
        d = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # auto-detects gzip/zlib headers
        for chunk in chunks:
            yield d.decompress(chunk)
        yield d.flush()
    elif encoding == "lz4":
        d = lz4.frame.LZ4FrameDecompressor()
        for chunk in chunks:
            while chunk:
                yield d.decompress(chunk)
                # A body may hold several frames; start afresh after each one.
                chunk, d = (d.unused_data, lz4.frame.LZ4FrameDecompressor()) if d.eof else (b"", d)
    else:
        raise CHError(89, f"Code: 89. DB::Exception: Unknown HTTP compression method: {encoding}. "
                          "(UNKNOWN_COMPRESSION_METHOD)")


class Encoder:
    """Response body pipeline: [compress=1 block framing] -> [Content-Encoding] -> sink."""

    def __init__(self, sink, native, encoding):
        self.sink, self.native, self.encoding = sink, native, encoding
        if encoding == "lz4":
            # auto_flush: every write leaves the server at once, so a stream is really a stream.
            self.z = lz4.frame.LZ4FrameCompressor(block_linked=False, auto_flush=True)
            self.pending = self.z.begin()
        elif encoding in ("gzip", "deflate"):
            self.z = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
            self.pending = b""
        else:
            self.z, self.pending = None, b""

    def write(self, data):
        if not data:
            return
        if self.native:
            data = b"".join(native_block(data[i:i + MAX_BLOCK]) for i in range(0, len(data), MAX_BLOCK))
        if self.encoding == "lz4":
            data, self.pending = self.pending + self.z.compress(data), b""
        elif self.z is not None:
            data = self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)
        if data:
            self.sink(data)

    def finish(self):
        if self.encoding == "lz4":
            self.sink(self.pending + self.z.flush())
        elif self.z is not None:
            self.sink(self.z.flush())


def header_length(data, fmt):
    """Length of the names/types header that each streamed chunk of `fmt` repeats."""
    fmt = fmt.lower()
    rows = 2 if fmt.endswith("withnamesandtypes") else 1 if fmt.endswith("withnames") else 0
    if not rows:
        return 0
    if not fmt.startswith("rowbinary"):
        pos = 0
        for _ in range(rows):
            pos = data.index(b"\n", pos) + 1
        return pos

    def varint(pos):
        value = shift = 0
        while True:
            byte = data[pos]
            value |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if byte < 0x80:
                return value, pos

    count, pos = varint(0)
    for _ in range(rows * count):
        size, pos = varint(pos)
        pos += size
    return pos


def parse_multipart(body, content_type):
    """The fields of a multipart/form-data body (the Rust crate sends `query` and `param_*` so)."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise CHError(36, "Code: 36. DB::Exception: multipart body without boundary. (BAD_ARGUMENTS)")
    fields = {}
    for part in body.split(b"--" + m.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, value = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        if name:
            fields[name.group(1).decode()] = value.removesuffix(b"\r\n").decode()
    return fields


def make_summary(**values):
    """X-ClickHouse-Summary: all counters, as strings, like the real server sends them."""
    keys = ("read_rows", "read_bytes", "written_rows", "written_bytes", "total_rows_to_read",
            "result_rows", "result_bytes", "elapsed_ns")
    return {k: str(values.get(k, 0)) for k in keys}


def sql_literal(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked responses
    server_version = "chdb-http"

    def setup(self):
        super().setup()
        # Without this every small reply waits for the peer's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):
        if self.server.verbose:
            super().log_message(fmt, *args)

    # --- request body -------------------------------------------------------------

    def raw_body(self):
        """The request body as it arrives (Content-Length or chunked), never all in memory."""
        self.unread_body = self.raw_body_chunks()
        return self.unread_body

    def raw_body_chunks(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                data = self.rfile.read(size)
                self.rfile.readline()
                yield data
            return
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            data = self.rfile.read(min(left, 1 << 20))
            if not data:
                raise ConnectionError("request body truncated")
            left -= len(data)
            yield data

    def has_body(self):
        return (self.command == "POST" and (int(self.headers.get("Content-Length") or 0) > 0
                or "chunked" in self.headers.get("Transfer-Encoding", "").lower()))

    def body(self, params):
        """Decoded body chunks: HTTP Content-Encoding first, then `decompress=1` framing."""
        chunks = decode_content(self.raw_body(), self.headers.get("Content-Encoding", ""))
        return read_native_blocks(chunks) if params.get("decompress") == "1" else chunks

    # --- response -------------------------------------------------------------------

    def start(self, status, params, query_id, fmt, summary=None, length=None):
        self.send_response(status)
        self.send_header("X-ClickHouse-Query-Id", query_id)
        self.send_header("X-ClickHouse-Server-Display-Name", "chdb-http")
        self.send_header("X-ClickHouse-Timezone", ENGINE.timezone)
        if fmt:
            self.send_header("X-ClickHouse-Format", fmt)
            binary = re.match(r"(rowbinary|native|parquet|arrow|orc|avro|msgpack)", fmt, re.I)
            self.send_header("Content-Type", "application/octet-stream" if binary
                             else "text/plain; charset=UTF-8")
        self.send_header("X-ClickHouse-Summary", json.dumps(make_summary(**(summary or {}))))
        self.send_header("Keep-Alive", "timeout=30")
        encoding = ""
        if params.get("enable_http_compression", "1") != "0":
            accepted = [e.split(";")[0].strip() for e in self.headers.get("Accept-Encoding", "").split(",")]
            encoding = next((e for e in ("lz4", "gzip", "deflate") if e in accepted), "")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        if length is not None and not encoding and params.get("compress") != "1":
            self.send_header("Content-Length", str(length))
            self.end_headers()
            return Encoder(self.wfile.write, False, "")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        return Encoder(self.write_chunk, params.get("compress") == "1", encoding)

    def write_chunk(self, data):
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunked(self):
        self.wfile.write(b"0\r\n\r\n")

    def reply(self, status, params, query_id, data, fmt=None, summary=None):
        out = self.start(status, params, query_id, fmt, summary, length=len(data))
        out.write(data)
        out.finish()
        if out.sink == self.write_chunk:
            self.end_chunked()

    def send_error_reply(self, err, params, query_id):
        status = ENGINE.status.get(err.code, 500)
        body = err.body()
        self.send_response(status)
        self.send_header("X-ClickHouse-Query-Id", query_id)
        self.send_header("X-ClickHouse-Exception-Code", str(err.code))
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # --- the request ---------------------------------------------------------------

    def handle_request(self):
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        self.unread_body = None
        if url.path in ("/ping", "/replicas_status") or (url.path == "/" and "query" not in params
                                                          and not self.has_body()):
            return self.reply(200, {}, query_id, b"Ok.\n")
        try:
            if url.path != "/":
                raise CHError(0, f"Code: 0. DB::Exception: There is no handle {url.path}. (OK)")
            self.authenticate(params)
            self.run(params, query_id)
        except CHError as err:
            # Read the rest of the body, so the client sees this error rather than a reset,
            # and the connection stays usable.
            try:
                for _ in self.unread_body or self.raw_body() if self.has_body() else ():
                    pass
            except (ValueError, ConnectionError):
                self.close_connection = True
            self.send_error_reply(err, params, query_id)

    do_GET = do_POST = handle_request

    def authenticate(self, params):
        user = self.headers.get("X-ClickHouse-User") or params.get("user")
        password = self.headers.get("X-ClickHouse-Key") or params.get("password")
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        user, password = user or "default", password or ""
        if (user, password) != (self.server.user, self.server.password):
            raise CHError(516, f"Code: 516. DB::Exception: {user}: Authentication failed: password is "
                               "incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)")

    def run(self, params, query_id):
        sql, data = params.get("query", ""), None
        if self.has_body():
            body = self.body(params)
            ctype = self.headers.get("Content-Type", "")
            if ctype.lower().startswith("multipart/form-data"):
                params.update(parse_multipart(b"".join(body), ctype))
                sql = params.get("query", "")
            elif sql and INSERT_RE.match(sql):
                data = body  # like the real server: the statement in the URL, data in the body
            else:
                head = b""
                for chunk in body:
                    head += chunk
                    if len(head) >= 1 << 16:
                        break
                inline = None if sql else INLINE_INSERT_RE.match(head)
                try:
                    if inline:  # `INSERT ... FORMAT X\n<data>` all in the body
                        sql, data = inline.group(1).decode(), itertools.chain([head[inline.end():]], body)
                    else:
                        text = (head + b"".join(body)).decode()
                        sql = f"{sql}\n{text}" if sql else text
                except UnicodeDecodeError as exc:
                    raise CHError.wrap(exc) from None
        if not sql.strip():
            raise CHError(62, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")

        fmt = self.headers.get("X-ClickHouse-Format") or params.get("default_format") or "TabSeparated"
        query_params = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        settings = SERVER_DEFAULTS | {k: v for k, v in params.items()
                                      if k not in CLIENT_PARAMS and not k.startswith("param_")}
        database = self.headers.get("X-ClickHouse-Database") or params.get("database")
        if self.server.query_log and data is None:
            line = json.dumps({"sql": sql, "params": query_params, "settings": settings,
                               "database": database})
            with self.server.query_log_lock:
                self.server.query_log.write(line + "\n")
                self.server.query_log.flush()

        started = time.monotonic_ns()
        conn = ENGINE.connect()
        try:
            try:
                if database:
                    conn.query(f"USE `{database.replace('`', '``')}`", "TSV")
                conn.query("SET " + ", ".join(f"{k} = {sql_literal(v)}" for k, v in settings.items()
                                              if re.fullmatch(r"\w+", k)), "TSV")
                if data is not None:
                    return self.run_insert(conn, sql, data, params, query_id, started)
                explicit = FORMAT_RE.search(sql)
                out_fmt = explicit.group(1) if explicit else fmt
                if re.match(r"\s*(SELECT|WITH|\()", sql, re.I) and STREAMABLE.fullmatch(out_fmt):
                    return self.run_streaming(conn, sql, fmt, out_fmt, query_params, params, query_id)
                result = conn.query(sql, fmt, params=query_params)
            except (RuntimeError, UnicodeDecodeError) as exc:
                raise CHError.wrap(exc) from None
            summary = dict(read_rows=result.rows_read(), read_bytes=result.bytes_read(),
                           total_rows_to_read=result.rows_read(), result_bytes=result.size(),
                           elapsed_ns=time.monotonic_ns() - started)
            self.reply(200, params, query_id, bytes(result.bytes()), out_fmt, summary)
        finally:
            conn.close()

    def run_insert(self, conn, sql, data, params, query_id, started):
        m = INSERT_RE.match(sql)
        # chdb's streaming insert wants the statement without FORMAT, and the format apart.
        inserter = conn.send_insert(m.group("stmt"), m.group("fmt") or "Values")
        try:
            pending = []
            size = 0
            for chunk in data:
                # Few big appends are much cheaper than many small ones.
                pending.append(chunk)
                size += len(chunk)
                if size >= 1 << 20:
                    conn.insert_append(inserter, b"".join(pending))
                    pending, size = [], 0
            if size:
                conn.insert_append(inserter, b"".join(pending))
            result = conn.insert_done(inserter)
        except BaseException:
            try:
                conn.insert_cancel(inserter)
            except RuntimeError:
                pass  # already over: the failure itself ended it
            raise
        summary = dict(written_rows=result.rows_written(), written_bytes=result.bytes_written(),
                       elapsed_ns=time.monotonic_ns() - started)
        self.reply(200, params, query_id, b"", None, summary)

    def run_streaming(self, conn, sql, fmt, out_fmt, query_params, params, query_id):
        stream = conn.send_query(sql, fmt, params=query_params)
        done = False
        try:
            # Fetch before answering, so that most errors still get a proper status code.
            first = bytes(conn.streaming_fetch_result(stream).bytes())
            done = not first
            out = self.start(200, params, query_id, out_fmt)
            try:
                header = first[:header_length(first, out_fmt)] if first else b""
                out.write(first)
                while not done:
                    chunk = bytes(conn.streaming_fetch_result(stream).bytes())
                    done = not chunk
                    out.write(chunk[len(header):] if header and chunk.startswith(header) else chunk)
            except RuntimeError as exc:
                done = True  # a failed stream is over; there is nothing to cancel
                # Headers are gone already: like the real server, append the error to the body.
                out.write(b"\n" + CHError.wrap(exc).body())
            out.finish()
            self.end_chunked()
        finally:
            if not done:
                # Closing a connection with a live stream kills the engine: cancel first.
                conn.streaming_cancel_query(stream)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    query_log = None  # --log-queries: an open file

    def handle_error(self, request, client_address):
        # Clients dropping keep-alive connections is normal; anything else is a bug here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main():
    global ENGINE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123, help="0 picks a free port")
    ap.add_argument("--path", help="data directory (default: a temporary one, removed at exit)")
    ap.add_argument("--user", default="default")
    ap.add_argument("--password", default=os.environ.get("CHDB_HTTP_PASSWORD", ""))
    ap.add_argument("--exit-on-stdin-eof", action="store_true",
                    help="exit when stdin closes, i.e. when the parent process dies")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    ap.add_argument("--log-queries", metavar="FILE",
                    help="append each query (SQL, parameters, settings) to FILE as a JSON line")
    args = ap.parse_args()

    temp = None if args.path else tempfile.mkdtemp(prefix="chdb-http-")
    ENGINE = Engine(args.path or temp)
    server = Server((args.host, args.port), Handler)
    server.user, server.password, server.verbose = args.user, args.password, args.verbose
    server.query_log = open(args.log_queries, "a") if args.log_queries else None
    server.query_log_lock = threading.Lock()

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.exit_on_stdin_eof:
        def watch_stdin():
            while os.read(sys.stdin.fileno(), 4096):
                pass
            stop()
        threading.Thread(target=watch_stdin, daemon=True).start()

    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    server.serve_forever()
    server.server_close()
    if temp:
        shutil.rmtree(temp, ignore_errors=True)
    # Skip interpreter teardown: requests may still run on daemon threads inside chdb.
    os._exit(0)


if __name__ == "__main__":
    main()
