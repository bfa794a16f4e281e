#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into fuzz/corpus/<target>/ (committed; rerun only
to change it). Small valid inputs of every format and option each target reads, so that the
fuzzer starts from the real code paths instead of the first bytes' checks. Needs cjpeg
(Debian package libjpeg-turbo-progs) for the JPEG seeds; the rest is the Python standard library.
"""
import gzip
import pathlib
import shutil
import struct
import subprocess
import tempfile
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", masked(length)) + record + struct.pack("<I", masked(record))


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num: int, payload: bytes) -> bytes:  # length-delimited
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def example(features: dict) -> bytes:
    """tf.train.Example {features {feature {key: value}}}: bytes_list 1, float_list 2, int64_list 3."""
    entries = b""
    for key, (kind, values) in sorted(features.items()):
        if kind == "bytes":
            lst = field(1, b"".join(field(1, v) for v in values))
        elif kind == "float":
            lst = field(2, field(1, b"".join(struct.pack("<f", v) for v in values)))
        else:
            lst = field(3, field(1, b"".join(varint(v) for v in values)))
        entries += field(1, field(1, key.encode()) + field(2, lst))
    return field(1, entries)


def png(width: int, height: int, channels: int, seed: int) -> bytes:
    color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(
        b"\0" + bytes((seed + x * 7 + y * 13 + c) & 255 for x in range(width) for c in range(channels))
        for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + \
        chunk(b"IEND", b"")


def jpeg(width: int, height: int, gray: bool) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        ppm = pathlib.Path(d) / "in.ppm"
        if gray:
            ppm.write_bytes(b"P5 %d %d 255\n" % (width, height) + bytes((x * 9) & 255 for x in range(width * height)))
        else:
            ppm.write_bytes(b"P6 %d %d 255\n" % (width, height) + bytes((x * 5) & 255 for x in range(3 * width * height)))
        return subprocess.run(["cjpeg", "-quality", "80", str(ppm)], check=True,
                              capture_output=True).stdout


def idx(dtype: int, dims, values: bytes) -> bytes:
    return bytes([0, 0, dtype, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + values


def split(a: bytes, b: bytes) -> bytes:  # fuzz_common.h split()
    return struct.pack("<H", len(a)) + a + b


def write(target: str, name: str, data: bytes) -> None:
    (CORPUS / target).mkdir(parents=True, exist_ok=True)
    (CORPUS / target / name).write_bytes(data)


def main() -> None:
    shutil.rmtree(CORPUS, ignore_errors=True)
    # fuzz_config: the shipped configs and the Hjson corpus of the parser's tests.
    for p in sorted((ROOT / "configs").glob("*.json")):
        write("fuzz_config", p.name, p.read_bytes())
    for p in sorted((ROOT / "tests/core/fixtures/hjson").iterdir()):
        write("fuzz_config", "hjson-" + p.name, p.read_bytes())
    write("fuzz_config", "synthetic.hjson", b"""[
  {
    datasets: {ktf.datasets.synthetic: {num_examples: 8, input_shape: [4], batch_size: 4}}
    model: {ktf.networks.MLP: {hidden: [8]}}
    loss: ktf.losses.CrossEntropy
    train_loop: {ktf.train.KerasTrainLoop: {epochs: 1}}
  }
]
""")
    # fuzz_idx: images + labels, uint8 and int32 images, 1-3 dimensions, gzip.
    imgs = idx(0x08, [3, 2, 2], bytes(range(12)))
    labs = idx(0x08, [3], bytes([0, 1, 2]))
    write("fuzz_idx", "uint8-3x2x2", split(imgs, labs))
    write("fuzz_idx", "int32-2x3", split(idx(0x0C, [2, 3], struct.pack(">6i", *range(6))),
                                          idx(0x08, [2], bytes([1, 0]))))
    write("fuzz_idx", "float-2x1x2x2", split(idx(0x0D, [2, 1, 2, 2], struct.pack(">8f", *range(8))),
                                             idx(0x08, [2], bytes([0, 1]))))
    write("fuzz_idx", "gzip", split(gzip.compress(imgs, mtime=0), gzip.compress(labs, mtime=0)))
    # fuzz_csv: the first byte holds the options (1 header, 2 ';', 4 fill_value, 8 num_classes).
    write("fuzz_csv", "header", b"\x01a,b,label\n1,2,0\n3.5,-4e2,1\n\"5\",6,2\n")
    write("fuzz_csv", "no-header", b"\x001,2,0\n3,4,1\n")
    write("fuzz_csv", "named-labels", b"\x01x,y\n1,cat\n2,dog\n3,\"c,a\"\"t\"\n")
    write("fuzz_csv", "semicolon-fill", b"\x07x;y;label\n1;NA;0\n;2;1\r\n")
    write("fuzz_csv", "num-classes", b"\x39x,label\n1,0\n2,2\n")
    # fuzz_tfrecord: image uint8 [2, 2, 1] raw + int64 label of 3 classes, plain and GZIP.
    recs = [example({"image": ("bytes", [bytes([i, i + 1, i + 2, i + 3])]), "label": ("int64", [i % 3])})
            for i in range(3)]
    data = b"".join(frame(r) for r in recs)
    write("fuzz_tfrecord", "raw", data)
    write("fuzz_tfrecord", "gzip", gzip.compress(data, mtime=0))
    write("fuzz_tfrecord", "empty-record", frame(b""))
    # fuzz_example: every list kind, an empty list, a negative int64.
    write("fuzz_example", "all-kinds", example({"b": ("bytes", [b"x", b""]), "f": ("float", [1.5, -2.0]),
                                                "i": ("int64", [3, -1, 1 << 40])}))
    for i, r in enumerate(recs):
        write("fuzz_example", "record-%d" % i, r)
    write("fuzz_example", "empty", b"")
    # fuzz_image: the first byte picks the channels (0 as stored, 1, 3, 4).
    for ch in (1, 2, 3, 4):
        write("fuzz_image", "png-%dch" % ch, bytes([ch & 3]) + png(5, 3, ch, ch))
    write("fuzz_image", "png-as-gray", b"\x01" + png(4, 4, 3, 9))
    write("fuzz_image", "jpeg-rgb", b"\x00" + jpeg(9, 7, False))
    write("fuzz_image", "jpeg-gray", b"\x02" + jpeg(8, 8, True))


if __name__ == "__main__":
    main()
