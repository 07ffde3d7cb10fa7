#!/usr/bin/env python3
"""The two ways a Python user would fetch a URL list, as peers in the benchmarks.

  pyfetch.py aiohttp -i LIST -d OUT -j C [--cacert CA] [--tree]
      asyncio + aiohttp: one ClientSession over a TCPConnector(limit=C); one task per URL,
      all gathered at once, C at a time (a Semaphore); each body streamed to its file.
  pyfetch.py threads -i LIST -d OUT -j C [--cacert CA]
      requests: a ThreadPoolExecutor of C threads, a Session per thread (keep-alive),
      each body streamed to its file.

A URL is saved as OUT/PATH, or with --tree as OUT/HOST[_PORT]/PATH. --cacert: HTTPS servers must
chain to that CA (aiohttp: an ssl.SSLContext; requests: verify= on each request, which
$REQUESTS_CA_BUNDLE cannot override). Exit status 1 if any URL failed.
"""
import argparse
import asyncio
import os
import ssl
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024


def destination(out, url, tree):
    u = urlsplit(url)
    path = unquote(u.path).lstrip("/")
    if tree:
        host = u.hostname + (f"_{u.port}" if u.port else "")
        return os.path.join(out, host, path)
    return os.path.join(out, path)


def read_urls(name):
    with (sys.stdin if name == "-" else open(name)) as f:
        return [line.strip() for line in f if line.strip()]


def with_aiohttp(urls, args):
    import aiohttp

    async def one(session, sem, url):
        async with sem:
            dest = destination(args.d, url, args.tree)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            async with session.get(url) as resp:
                resp.raise_for_status()
                with open(dest, "wb") as f:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        f.write(chunk)

    async def run():
        ctx = ssl.create_default_context(cafile=args.cacert) if args.cacert else None
        conn = aiohttp.TCPConnector(limit=args.j, **({"ssl": ctx} if ctx else {}))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
        sem = asyncio.Semaphore(args.j)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
            return await asyncio.gather(*(one(session, sem, u) for u in urls), return_exceptions=True)

    return [r for r in asyncio.run(run()) if isinstance(r, BaseException)]


def with_threads(urls, args):
    import requests

    local = threading.local()

    def one(url):
        s = getattr(local, "session", None)
        if s is None:
            s = local.session = requests.Session()
        dest = destination(args.d, url, args.tree)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        extra = {"verify": args.cacert} if args.cacert else {}
        with s.get(url, stream=True, timeout=(30, 60), **extra) as r:
            r.raise_for_status()
            with open(dest, "wb") as f:
                for chunk in r.iter_content(chunk_size=CHUNK):
                    f.write(chunk)

    with ThreadPoolExecutor(max_workers=args.j) as pool:
        futures = [pool.submit(one, u) for u in urls]
    return [f.exception() for f in futures if f.exception() is not None]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("how", choices=["aiohttp", "threads"])
    ap.add_argument("-i", required=True, help="URL list, one a line ('-': stdin)")
    ap.add_argument("-d", required=True, help="output directory")
    ap.add_argument("-j", type=int, default=16, help="downloads at a time")
    ap.add_argument("--cacert", help="CA bundle (PEM) HTTPS servers must chain to")
    ap.add_argument("--tree", action="store_true", help="save as OUT/HOST/PATH")
    args = ap.parse_args()
    urls = read_urls(args.i)
    errors = (with_aiohttp if args.how == "aiohttp" else with_threads)(urls, args)
    if errors:
        print(f"{len(errors)} of {len(urls)} failed; first: {errors[0]!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
