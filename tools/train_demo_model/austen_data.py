"""Jane Austen's six novels from Debian's r-cran-janeaustenr package, without R.

The package stores each novel as an R character vector (one element per line of the Project
Gutenberg text) in R's lazy-load database: data/Rdata.rdx (a gzip'd serialized index of name ->
(offset, length)) and data/Rdata.rdb (zlib blobs, each a 4-byte big-endian length followed by a
serialized object). This file reads both with a minimal reader of R's XDR serialization format
(version 2/3), enough for the character vectors and lists the package holds. No Python package
for R's format exists in Debian, hence our own.

    /usr/bin/python3 austen_data.py [--deb FILE] --out DIR   # writes DIR/<book>.txt
"""
import argparse
import glob
import gzip
import os
import struct
import subprocess
import tempfile
import zlib

BOOKS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey",
         "persuasion"]

NILVALUE_SXP, REFSXP = 254, 255
SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 1, 2, 9, 10, 13, 14, 16, 19


class _Reader:
    """XDR-format R unserializer for the few SEXP types a data package's vectors use."""

    def __init__(self, data):
        self.d, self.i, self.refs = data, 0, []

    def int(self):
        (v,) = struct.unpack_from(">i", self.d, self.i)
        self.i += 4
        return v

    def header(self):
        if self.d[:2] != b"X\n":
            raise ValueError("not an XDR R serialization (expected 'X\\n')")
        self.i = 2
        version = self.int()
        self.int()  # writer's R version
        self.int()  # minimal reader version
        if version == 3:
            n = self.int()
            self.i += n  # native encoding name
        elif version != 2:
            raise ValueError(f"R serialization version {version} not supported")

    def item(self):
        flags = self.int()
        t = flags & 0xFF
        has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)
        if t == NILVALUE_SXP:
            return None
        if t == REFSXP:
            return self.refs[(flags >> 8) - 1]
        if t == SYMSXP:
            sym = self.item()
            self.refs.append(sym)
            return sym
        if t == LISTSXP:
            attr = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            car = self.item()
            cdr = self.item()
            return [(tag, car)] + (cdr or [])
        if t == CHARSXP:
            n = self.int()
            if n == -1:
                return None
            s = self.d[self.i:self.i + n]
            self.i += n
            return s.decode("utf-8" if flags & (1 << 15) or not flags & (1 << 14) else "latin-1")
        if t in (LGLSXP, INTSXP):
            n = self.int()
            v = list(struct.unpack_from(f">{n}i", self.d, self.i))
            self.i += 4 * n
        elif t == REALSXP:
            n = self.int()
            v = list(struct.unpack_from(f">{n}d", self.d, self.i))
            self.i += 8 * n
        elif t in (STRSXP, VECSXP):
            n = self.int()
            v = [self.item() for _ in range(n)]
        else:
            raise ValueError(f"R SEXP type {t} not supported by this reader")
        if has_attr:
            self.item()  # names, class, ...: not needed here
        return v


def unserialize(data):
    r = _Reader(data)
    r.header()
    return r.item()


def read_lazyload(data_dir):
    """{name: object} from data_dir/Rdata.rdx + Rdata.rdb."""
    with open(os.path.join(data_dir, "Rdata.rdx"), "rb") as f:
        raw = f.read()
    index = unserialize(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else zlib.decompress(raw[4:]))
    # index is list(variables=, references=, compressed=); variables is a named list of
    # c(offset, length) whose names sit in its attributes: re-read them from the pairlist.
    with open(os.path.join(data_dir, "Rdata.rdb"), "rb") as f:
        rdb = f.read()
    names = _variable_names(raw)
    out = {}
    for name, (offset, length) in zip(names, index[0]):
        blob = rdb[offset:offset + length]
        out[name] = unserialize(zlib.decompress(blob[4:]))
    return out


def _variable_names(raw):
    """The names attribute of the index's `variables` list (the reader above skips attributes)."""
    r = _Reader(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else zlib.decompress(raw[4:]))
    r.header()
    flags = r.int()
    assert flags & 0xFF == VECSXP
    r.int()  # 3 elements
    flags = r.int()  # variables: VECSXP with attributes
    assert flags & 0xFF == VECSXP and flags & (1 << 9)
    n = r.int()
    for _ in range(n):
        r.item()
    attrs = r.item()  # pairlist [(tag, value)]
    return dict(attrs)["names"]


def extract_deb(deb, dest):
    subprocess.run(["dpkg-deb", "-x", deb, dest], check=True)
    hits = glob.glob(os.path.join(dest, "usr/lib/R/site-library/janeaustenr/data"))
    if not hits:
        raise FileNotFoundError(f"{deb} holds no janeaustenr/data directory")
    return hits[0]


def load_books(deb=None):
    """{book: text} for the six novels; downloads the .deb with apt-get if none is given."""
    with tempfile.TemporaryDirectory() as tmp:
        if deb is None:
            subprocess.run(["apt-get", "download", "r-cran-janeaustenr"], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL)
            deb = glob.glob(os.path.join(tmp, "r-cran-janeaustenr_*.deb"))[0]
        objs = read_lazyload(extract_deb(deb, os.path.join(tmp, "x")))
    missing = [b for b in BOOKS if b not in objs]
    if missing:
        raise ValueError(f"janeaustenr lacks {missing}")
    return {b: "\n".join("" if line is None else line for line in objs[b]) + "\n" for b in BOOKS}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deb", help="r-cran-janeaustenr_*.deb (default: apt-get download it)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name, text in load_books(a.deb).items():
        with open(os.path.join(a.out, name + ".txt"), "w", encoding="utf-8") as f:
            f.write(text)
        print(f"{name}: {len(text)} chars, {text.count(chr(10))} lines")


if __name__ == "__main__":
    main()
