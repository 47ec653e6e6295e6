"""One metrics.jsonl record (stdin) -> gpu_check.sh's training-benchmark line.

    mfu_line.py CONFIG PRECISION PEAK_LINE  <  last logged record

mfu is the trainer's figure: on a GPU against the data-sheet peak, on a CPU against the measured matmul peak.
mfu_of_matmul is the same work against the matmul rate `streamsink bench-peak` measured (PEAK_LINE, its output
line): on a GPU mfu * data_sheet_tflops / matmul_tflops; on a CPU the denominator already is the measured one, so
it equals mfu. "?" when PEAK_LINE has no usable figure, or is for another precision than the run's.
"""
import json
import re
import sys


def mfu_of_matmul(mfu, precision, peak_line):
    if not re.search(r"(precision=%s |%s_matmul_gflops=)" % (precision, precision), peak_line):
        return "?"  # no figure, or another precision's
    sheet = re.search(r"data_sheet_tflops=([0-9.]+)", peak_line)
    measured = re.search(r"matmul_tflops=([0-9.]+)", peak_line)
    if sheet and measured:
        s, m = float(sheet.group(1)), float(measured.group(1))
        return "%.3f" % (mfu * s / m) if s > 0 and m > 0 else "?"
    return "%.3f" % mfu if re.search(r"_matmul_gflops=[0-9.]+", peak_line) else "?"


def main():
    config, precision, peak_line = sys.argv[1:4]
    j = json.loads(sys.stdin.read())
    print("config=%s precision=%s tok_s=%.0f mfu=%.3f mfu_of_matmul=%s"
          % (config, precision, j["tok_s"], j["mfu"], mfu_of_matmul(j["mfu"], precision, peak_line)))


if __name__ == "__main__":
    main()
