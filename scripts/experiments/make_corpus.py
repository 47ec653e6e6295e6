#!/usr/bin/env python3
"""A text corpus from files a machine already holds (issue 11: the GPU machine's Python installation).

Walks SRC folders (symbolic links are not followed, so no loop and no file twice through a link), takes the files
whose name ends in one of --ext and whose size lies in [--min-bytes, --max-bytes], in an order that is shuffled but
fixed (by the SHA-1 of each path), so that a cap samples every package rather than the first ones alphabetically;
keeps those that decode as UTF-8 and hold no NUL byte, drops exact duplicates by content (SHA-1), and writes each
kept file as OUT/<sha1>.txt until --cap-mb megabytes are written. One file per document, so `streamsink data
prepare` splits by file.

    make_corpus.py SRC [SRC...] --out DIR [--cap-mb 400]

Prints one summary line: `corpus: files=… bytes=… duplicates=… not_text=… out_of_size=… scanned=… seconds=…`.
Standard library only: it runs on a bare machine's python3.
"""
import argparse
import hashlib
import os
import sys
import time

DEFAULT_EXT = ".py,.pyi,.md,.rst,.txt,.c,.h,.cc,.cpp,.hpp,.cu,.cuh"


def candidate_files(roots, exts, min_bytes, max_bytes, counts):
    """(path, size) of every regular file under roots with a wanted extension and size, in the fixed shuffled order."""
    found = []
    for root in roots:
        for dirpath, _, filenames in os.walk(root):
            for name in filenames:
                if not name.endswith(exts):
                    continue
                path = os.path.join(dirpath, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                counts["scanned"] += 1
                size = os.path.getsize(path)
                if size < min_bytes or size > max_bytes:
                    counts["out_of_size"] += 1
                    continue
                found.append((hashlib.sha1(os.path.relpath(path, root).encode()).hexdigest(), path, size))
    found.sort()
    return [(path, size) for _, path, size in found]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", nargs="+", help="folders to take text from")
    ap.add_argument("--out", required=True, help="folder to write the documents into (created; must be empty)")
    ap.add_argument("--cap-mb", type=float, default=400, help="stop after this many megabytes (MiB) written")
    ap.add_argument("--min-bytes", type=int, default=1024)
    ap.add_argument("--max-bytes", type=int, default=2 * 1024 * 1024)
    ap.add_argument("--ext", default=DEFAULT_EXT, help="comma-separated file-name endings to keep")
    args = ap.parse_args(argv)

    for s in args.src:
        if not os.path.isdir(s):
            sys.exit(f"make_corpus: {s}: not a folder")
    if os.path.exists(args.out) and os.listdir(args.out):
        sys.exit(f"make_corpus: {args.out}: not empty (the corpus is written into an empty folder)")
    if args.cap_mb <= 0 or args.min_bytes < 0 or args.max_bytes < args.min_bytes:
        sys.exit("make_corpus: --cap-mb must be positive and --min-bytes <= --max-bytes")
    os.makedirs(args.out, exist_ok=True)

    t0 = time.time()
    cap = int(args.cap_mb * 1024 * 1024)
    exts = tuple(e.strip() for e in args.ext.split(",") if e.strip())
    counts = {"scanned": 0, "out_of_size": 0, "duplicates": 0, "not_text": 0}
    seen = set()
    written = files = 0
    for path, size in candidate_files(args.src, exts, args.min_bytes, args.max_bytes, counts):
        if written + size > cap:
            break
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            counts["not_text"] += 1
            continue
        if b"\0" in data:
            counts["not_text"] += 1
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            counts["not_text"] += 1
            continue
        digest = hashlib.sha1(data).hexdigest()
        if digest in seen:
            counts["duplicates"] += 1
            continue
        seen.add(digest)
        # Written under a hidden name (data prepare skips hidden files) and renamed when whole: a full disk or a
        # kill never leaves a truncated document under a name that claims its hash.
        tmp = os.path.join(args.out, "." + digest + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(args.out, digest + ".txt"))
        written += len(data)
        files += 1
    if files == 0:
        sys.exit(f"make_corpus: no text file found under {' '.join(args.src)} (endings {','.join(exts)}, "
                 f"{args.min_bytes}..{args.max_bytes} bytes)")
    print(f"corpus: files={files} bytes={written} duplicates={counts['duplicates']} not_text={counts['not_text']} "
          f"out_of_size={counts['out_of_size']} scanned={counts['scanned']} seconds={time.time() - t0:.1f}")


if __name__ == "__main__":
    main()
