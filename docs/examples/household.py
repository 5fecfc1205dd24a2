#!/usr/bin/env python3
"""Submit one cycle's data to the household's core and wait for the bill.

    python3 household.py --endpoint tcp://127.0.0.1:6000 --cycle 1 --csv data.csv [--timeout 120]

data.csv has the header promise_kwh,actual_kwh and one row per 15-minute
slot (kWh; positive = consumption, negative = feed-in). Prints the bill as
one line of JSON: {"cycle_id": 1, "bill": "...", "reward": "...", "total": "..."}.
Exit status: 0 billed, 1 no bill before the timeout, 2 refused (or bad input).
Needs Python 3.11 and pyzmq (pip install pyzmq). See docs/api.md.
"""

import argparse
import csv
import json
import sys
import time

import zmq


class Core:
    """A REQ socket to the core's household API, recreated after a timeout."""

    def __init__(self, endpoint: str):
        self.endpoint, self.socket = endpoint, None

    def call(self, request: dict, deadline: float) -> dict | None:
        """Sends one request; returns the answer, or None if none came in time."""
        if self.socket is None:
            self.socket = zmq.Context.instance().socket(zmq.REQ)
            self.socket.setsockopt(zmq.LINGER, 0)
            self.socket.connect(self.endpoint)
        # An answer can take ~40 s while the core cannot reach the edge.
        wait = min(60.0, max(0.1, deadline - time.monotonic()))
        self.socket.setsockopt(zmq.RCVTIMEO, int(wait * 1000))
        self.socket.send(json.dumps(request).encode())
        try:
            return json.loads(self.socket.recv())
        except zmq.Again:  # a REQ socket that got no answer cannot send again
            self.socket.close()
            self.socket = None
            return None


def fail(message: str, status: int):
    print(f"household.py: {message}", file=sys.stderr)
    sys.exit(status)


def read_csv(path: str) -> tuple[list[float], list[float]]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, skipinitialspace=True))
        return ([float(r["promise_kwh"]) for r in rows], [float(r["actual_kwh"]) for r in rows])
    except (OSError, KeyError, TypeError, ValueError) as e:
        fail(f"{path}: need columns promise_kwh,actual_kwh with numbers ({e!r})", 2)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", required=True, help="household API, e.g. tcp://127.0.0.1:6000")
    p.add_argument("--cycle", type=int, required=True)
    p.add_argument("--csv", required=True, help="promise_kwh,actual_kwh per slot")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds (default 120)")
    args = p.parse_args()
    promises, actual = read_csv(args.csv)
    deadline = time.monotonic() + args.timeout
    core, state = Core(args.endpoint), "not submitted"
    # Submit (retried on edge_unavailable and on timeouts: the same data may
    # be sent again), then poll get_bill until the bill is there.
    request = {"submit": {"cycle_id": args.cycle, "promises_kwh": promises, "actual_kwh": actual}}
    pause = 0.5
    while True:
        answer = core.call(request, deadline) or {}
        if "bill" in answer:
            print(json.dumps(answer["bill"]))
            return
        if "accepted" in answer or "pending" in answer:
            state = (answer.get("accepted") or answer.get("pending"))["state"]
            if state.startswith("failed"):
                fail(f"cycle {args.cycle}: {state}", 2)
            request, pause = {"get_bill": {"cycle_id": args.cycle}}, 0.2
        elif "error" in answer and answer["error"]["code"] != "edge_unavailable":
            fail(f"the core refused ({answer['error']['code']}): {answer['error']['message']}", 2)
        if time.monotonic() + pause > deadline:
            fail(f"no bill for cycle {args.cycle} after {args.timeout:g} s (state: {state})", 1)
        time.sleep(pause)


if __name__ == "__main__":
    main()
