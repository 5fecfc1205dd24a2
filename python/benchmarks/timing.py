"""Times HidingContext.hide and .decrypt from Python on the inputs of the
Rust benchmarks (benches/benches/pipeline.rs: T = 672 slots, UCS, the
first household of a community of 50 or 1,000 members), to compare with
`cargo bench -p pb-benches --bench pipeline -- core_hide household_T672`.

Run: python python/benchmarks/timing.py  (after pip install ./python)
Prints the median of several timeit repeats per call, and the time of
hiding 64 households in a thread pool of 1 and 2 threads (the GIL is
released during hide).
"""

import statistics
import timeit
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import private_billing as pb

T = 672


def context():
    p = [10_000 + (t * 37) % 15_000 for t in range(T)]
    units = Decimal("0.00001")
    return pb.CycleContext(
        1,
        trading=[Decimal(x) * units for x in p],
        retail=[Decimal(x + 11_000) * units for x in p],
        feed_in=[Decimal(6_000) * units] * T,
    )


def data(i):
    u = [((t * 13 + i * 7) % 900) - 300 for t in range(T)]
    x = [w + ((t * 31 + i) % 200) - 100 for t, w in enumerate(u)]
    wh = Decimal("0.001")
    return pb.Data(1, promises_kwh=[Decimal(v) * wh for v in u],
                   actual_kwh=[Decimal(v) * wh for v in x])


def median_per_call(stmt, number, repeat=15):
    runs = timeit.repeat(stmt, number=number, repeat=repeat)
    return statistics.median(runs) / number


def main():
    ctx = context()
    for n in (50, 1000):
        ids = [f"m{i:05}" for i in range(n)]
        identities = {h: pb.IdentityKey.generate() for h in ids[:1]}
        members = {h: pb.IdentityKey.generate().public for h in ids[1:]}
        members[ids[0]] = identities[ids[0]].public
        h = pb.HidingContext(ids[0], identities[ids[0]], members)
        d = data(0)
        t = median_per_call(lambda: h.hide(d, ctx), number=20 if n == 50 else 5)
        print(f"hide, community of {n}: {t * 1e3:.3f} ms")

    # A community of 8 on the PRZS path (pairwise masks with 7 peers), as
    # the network runs it.
    ids = [f"m{i:05}" for i in range(8)]
    identities = {h: pb.IdentityKey.generate() for h in ids}
    members = {h: k.public for h, k in identities.items()}
    households = {h: pb.HidingContext(h, identities[h], members) for h in ids}
    billing = pb.SharedBilling()
    for h in ids:
        billing.register_member(h, households[h].public_key())
    all_data = {h: data(i) for i, h in enumerate(ids)}
    billing.record_context(ctx)
    for h in ids:
        billing.record_data(households[h].hide(all_data[h], ctx))
    bills = billing.compute_bills(1)
    h, hb = ids[0], bills[ids[0]]
    hc = households[h]
    t = median_per_call(lambda: hc.decrypt(hb), number=2000)
    print(f"decrypt: {t * 1e6:.2f} us")

    many = [data(i) for i in range(64)]
    hidden_ctx = households[ids[0]]
    for threads in (1, 2):
        with ThreadPoolExecutor(threads) as pool:
            runs = timeit.repeat(lambda: list(pool.map(lambda x: hidden_ctx.hide(x, ctx), many)),
                                 number=1, repeat=5)
        print(f"hide 64 households (community of 8), {threads} thread(s): "
              f"{statistics.median(runs) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
