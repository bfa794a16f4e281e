#!/usr/bin/env python3
"""TensorFlow's side of the cross-checks in tests/crosscheck/tf_crosscheck_test.cpp (PyPI's
tensorflow-cpu, installed by scripts/setup.sh with KTF_SETUP_TESTS=1 into the tests' venv).

  write <dir> <seed>           TensorFlow writes random tf.train.Examples to <dir>/plain.tfrecord
                               and <dir>/gzip.tfrecord (GZIP), and their values to
                               <dir>/expected.json for ktf to compare value for value
  read-records <dir>           TensorFlow reads <dir>/plain.tfrecord and <dir>/gzip.tfrecord, which
                               ktf wrote, and compares them with ktf's <dir>/expected.json
  read-shards <dir>            TensorFlow reads the shards `ktf-host --convert` wrote to <dir> with
                               tf.io.parse_single_example and their features.json, and prints
                               "<split> <records> <label sum> <pixel sum>" per split
  read-events <dir>            TensorBoard's EventAccumulator reads the event files below <dir>
                               and prints "<run> <tag> <step> <value>" for every scalar
  read-hparams <dir>           TensorBoard's event multiplexer and hparams plugin read the HParams
                               session in <dir> and print its "start", "hparam <name> <kind>
                               <json>", "end <status>" and "final <run> <tag> <step> <value>"
  read-profile <dir>           TensorBoard's PyTorch profiler plugin (torch-tb-profiler) loads the
                               runs of traces below <dir> and prints "run <name> profiles <n>
                               views <v,...>", and per trace "trace <run> <file> steps <s,...>"
                               and "ops <name>..."

Values are exchanged exactly: bytes as hex, floats as their 32-bit patterns, int64s as decimal.
Exit 0 when everything matched (read-records), 1 with the first mismatches on stdout otherwise.
"""
import json
import os
import random
import struct
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# On CPUs with AVX-512, TensorFlow announces its oneDNN operations on stderr, which the tests read
# with stdout; its numerics are not what is checked here.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
import tensorflow as tf  # noqa: E402


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bits_f32(b):
    return struct.unpack("<f", struct.pack("<I", b))[0]


SPECIAL_FLOATS = [0.0, -0.0, 1e-45, -3.4e38, float("inf"), float("-inf"), float("nan")]
SPECIAL_INTS = [0, -1, 1, 2**63 - 1, -2**63, 2**31, -2**31 - 1]


def random_feature(rng):
    kind = rng.choice(["bytes", "float", "int64", "none"])
    n = rng.choice([0, 1, 1, 2, 5, 40])
    if kind == "bytes":
        values = [bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 300]))) for _ in range(n)]
        return kind, values, tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if kind == "float":
        values = [rng.choice(SPECIAL_FLOATS) if rng.random() < 0.2 else rng.uniform(-1e6, 1e6)
                  for _ in range(n)]
        values = [bits_f32(f32_bits(v)) for v in values]  # what float32 holds
        return kind, values, tf.train.Feature(float_list=tf.train.FloatList(value=values))
    if kind == "int64":
        values = [rng.choice(SPECIAL_INTS) if rng.random() < 0.3 else rng.randrange(-2**63, 2**63)
                  for _ in range(n)]
        return kind, values, tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return kind, [], tf.train.Feature()


def encode(kind, values):
    if kind == "bytes":
        return [v.hex() for v in values]
    if kind == "float":
        return [f32_bits(v) for v in values]
    if kind == "int64":
        return [str(v) for v in values]
    return []


def write(out_dir, seed):
    rng = random.Random(seed)
    records = []
    protos = []
    for _ in range(60):
        features = {}
        record = {}
        for _ in range(rng.choice([0, 1, 3, 8])):
            key = rng.choice(["image", "label", "x", "ключ", "a/b", ""]) + str(rng.randrange(5))
            kind, values, feature = random_feature(rng)
            features[key] = feature
            record[key] = {"kind": kind, "values": encode(kind, values)}
        records.append(record)
        protos.append(tf.train.Example(features=tf.train.Features(feature=features)))
    with tf.io.TFRecordWriter(os.path.join(out_dir, "plain.tfrecord")) as w:
        for p in protos:
            w.write(p.SerializeToString())
    with tf.io.TFRecordWriter(os.path.join(out_dir, "gzip.tfrecord"),
                              tf.io.TFRecordOptions(compression_type="GZIP")) as w:
        for p in protos:
            w.write(p.SerializeToString())
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(records, f, sort_keys=True)  # as ktf orders keys (std::map, UTF-8 bytes)


def decode(feature):
    which = feature.WhichOneof("kind")
    if which == "bytes_list":
        return "bytes", [v.hex() for v in feature.bytes_list.value]
    if which == "float_list":
        return "float", [f32_bits(v) for v in feature.float_list.value]
    if which == "int64_list":
        return "int64", [str(v) for v in feature.int64_list.value]
    return "none", []


def read_records(in_dir):
    with open(os.path.join(in_dir, "expected.json")) as f:
        expected = json.load(f)
    problems = []
    for name, compression in (("plain.tfrecord", ""), ("gzip.tfrecord", "GZIP")):
        got = []
        for raw in tf.data.TFRecordDataset(os.path.join(in_dir, name), compression_type=compression):
            ex = tf.train.Example.FromString(raw.numpy())
            rec = {}
            for key, feature in ex.features.feature.items():
                kind, values = decode(feature)
                rec[key] = {"kind": kind, "values": values}
            got.append(rec)
        if len(got) != len(expected):
            problems.append("%s: %d records, expected %d" % (name, len(got), len(expected)))
            continue
        for i, (g, e) in enumerate(zip(got, expected)):
            if g != e:
                problems.append("%s: record %d: TensorFlow read %s, ktf wrote %s" % (name, i, g, e))
    print("\n".join(problems[:5]) if problems else "ok: %d records x 2 files" % len(expected))
    return 1 if problems else 0


def read_shards(in_dir):
    import numpy as np
    with open(os.path.join(in_dir, "features.json")) as f:
        info = json.load(f)
    spec, raw_dtype = {}, {}
    for key, feat in info["features"].items():
        if feat.get("encoding") == "raw":
            spec[key] = tf.io.FixedLenFeature([], tf.string)
            raw_dtype[key] = {"uint8": np.uint8, "float32": np.float32}[feat["dtype"]]
        else:
            dtype = {"float32": tf.float32, "int64": tf.int64}[feat["dtype"]]
            shape = feat.get("shape", [])
            spec[key] = tf.io.FixedLenFeature([int(np.prod(shape))] if shape else [], dtype)
    compression = "GZIP" if info.get("compression") == "GZIP" else ""
    for split, meta in sorted(info["splits"].items()):
        files = [os.path.join(in_dir, name) for name in meta["files"]]
        ds = tf.data.TFRecordDataset(files, compression_type=compression)
        ds = ds.map(lambda r: tf.io.parse_single_example(r, spec))
        records = labels = pixels = 0
        for ex in ds.as_numpy_iterator():
            records += 1
            labels += int(ex["label"])
            pixels += int(np.frombuffer(ex["image"], raw_dtype["image"]).astype(np.int64).sum())
        print(split, records, labels, pixels)
    return 0


def read_events(in_dir):
    from tensorboard.backend.event_processing import event_accumulator
    for root, _, files in sorted(os.walk(in_dir)):
        if not any(".tfevents." in f for f in files):
            continue
        acc = event_accumulator.EventAccumulator(root, size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        run = os.path.relpath(root, in_dir)
        for tag in sorted(acc.Tags()["scalars"]):
            for e in acc.Scalars(tag):
                print(run, tag, e.step, repr(e.value))
        for tag in sorted(acc.Tags()["tensors"]):  # TF2 summaries store scalars as tensors
            for e in acc.Tensors(tag):
                value = tf.make_ndarray(e.tensor_proto)
                if value.ndim == 0 and value.dtype.kind == "f":
                    print(run, tag, e.step, repr(float(value)))
    return 0


def read_hparams(log_dir):
    """The HParams session in log_dir as TensorBoard's own reader (the event multiplexer its
    server uses) and its hparams plugin's parser see it."""
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(log_dir)
    mux.Reload()
    content = mux.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    for run in sorted(content):
        tags = content[run]
        if metadata.SESSION_START_INFO_TAG in tags:
            info = metadata.parse_session_start_info_plugin_data(
                tags[metadata.SESSION_START_INFO_TAG])
            print("start", run, info.start_time_secs)
            for name in sorted(info.hparams):
                value = info.hparams[name]
                kind = value.WhichOneof("kind")
                print("hparam", name, kind, json.dumps(getattr(value, kind)))
        if metadata.SESSION_END_INFO_TAG in tags:
            info = metadata.parse_session_end_info_plugin_data(tags[metadata.SESSION_END_INFO_TAG])
            print("end", run, info.status)
        for tag in sorted(mux.GetAccumulator(run).Tags()["tensors"]):
            if tag.startswith("final_"):
                for e in mux.Tensors(run, tag):
                    print("final", run, tag, e.step,
                          repr(float(tensor_util.make_ndarray(e.tensor_proto))))
    return 0


def read_profile(log_dir):
    """TensorBoard's PyTorch profiler plugin (torch-tb-profiler) loads every run of traces below
    log_dir as its server does (RunLoader) and parses each trace (RunProfileData)."""
    import tempfile
    from torch_tb_profiler import io as tb_io
    from torch_tb_profiler.profiler.data import RunProfileData
    from torch_tb_profiler.profiler.loader import RunLoader
    for root, _, files in sorted(os.walk(log_dir)):
        traces = sorted(f for f in files if f.endswith(".pt.trace.json"))
        if not traces:
            continue
        name = os.path.relpath(root, log_dir)
        run = RunLoader(name, root, tb_io.Cache(tempfile.mkdtemp())).load()
        print("run", name, "profiles", len(run.profiles), "views",
              ",".join(v.name for v in run.views))
        for f in traces:
            data = RunProfileData.parse(f.split(".")[0], None, os.path.join(root, f),
                                        tempfile.mkdtemp())
            print("trace", name, f, "steps", ",".join(data.steps_names))
            print("ops", " ".join(sorted({op.name for op in data.op_list_groupby_name})), "")
    return 0


def main():
    cmd = sys.argv[1]
    if cmd == "write":
        write(sys.argv[2], int(sys.argv[3]))
        return 0
    if cmd == "read-records":
        return read_records(sys.argv[2])
    if cmd == "read-shards":
        return read_shards(sys.argv[2])
    if cmd == "read-events":
        return read_events(sys.argv[2])
    if cmd == "read-hparams":
        return read_hparams(sys.argv[2])
    if cmd == "read-profile":
        return read_profile(sys.argv[2])
    print("unknown command " + cmd)
    return 2


if __name__ == "__main__":
    sys.exit(main())
