#!/usr/bin/python3
"""Plots of a `linkgate-bench all` JSON result (docs/benchmarks.md).

    bench_plot.py RESULT.json OUTDIR

Writes one PNG per section that ran: every bar is a ratio to the baseline
measured in the same run, with the min-max over rounds as the error bar;
and tables.md, the same figures as Markdown tables (docs/benchmarks.md).
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def bars(ax, names, med, lo, hi, color):
    # A value JSON could not hold (NaN, inf: null) is left out.
    keep = [i for i, m in enumerate(med) if m is not None]
    names, med = [names[i] for i in keep], [med[i] for i in keep]
    lo = [med[k] if lo[i] is None else lo[i] for k, i in enumerate(keep)]
    hi = [med[k] if hi[i] is None else hi[i] for k, i in enumerate(keep)]
    if isinstance(color, list):
        color = [color[i] for i in keep]
    y = range(len(names))
    # min-max as drawn: never below zero, also where a negative baseline
    # swapped the ends.
    err = [[max(0, m - min(a, b)) for m, a, b in zip(med, lo, hi)],
           [max(0, max(a, b) - m) for m, a, b in zip(med, lo, hi)]]
    ax.barh(list(y), med, xerr=err, color=color, capsize=3)
    ax.set_yticks(list(y))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    for i, m in enumerate(med):
        ax.text(m, i, f" {m:.3g}", va="center", fontsize=7)


def save(fig, out, name, written):
    path = os.path.join(out, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)


def throughput(sec, out, written):
    cases = sec["cases"]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(cases) + 1.5))
    names = [c["name"] for c in cases]
    r = [c["ratio_to_bare"] for c in cases]
    colors = []
    for c in cases:
        n = c["name"]
        colors.append("tab:blue" if n.startswith("linkgate") else "tab:gray" if n.startswith(("bare", "lru"))
                      else "tab:orange" if n.startswith("nft") else "tab:green")
    bars(ax, names, [x["median"] for x in r], [x["min"] for x in r], [x["max"] for x in r], colors)
    ax.set_xscale("log")
    ax.set_xlabel("packets/s received at the far end, ratio to the bare redirect program (same round; log)")
    ax.axvline(1.0, color="black", lw=0.8)
    ax.axvline(0.7, color="red", lw=0.8, ls="--")
    ax.set_title("XDP throughput through veth, every case vs bare redirect (red: 0.7x target)")
    save(fig, out, "throughput.png", written)

    # Rules: linkgate new flows vs nftables linear / set, ratio to bare.
    by = {c["name"]: c for c in cases}
    counts = sec["params"]["rule_counts"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for prefix, label, col in (("linkgate-new-", "linkgate, new flows", "tab:blue"),
                               ("nft-linear-", "nftables linear chain", "tab:orange"),
                               ("nft-set-", "nftables interval set", "tab:green")):
        xs, ys, lo, hi = [], [], [], []
        for n in counts:
            c = by.get(f"{prefix}{n}/64B")
            if c and None not in c["ratio_to_bare"].values():
                xs.append(n)
                ys.append(c["ratio_to_bare"]["median"])
                lo.append(c["ratio_to_bare"]["median"] - c["ratio_to_bare"]["min"])
                hi.append(c["ratio_to_bare"]["max"] - c["ratio_to_bare"]["median"])
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", label=label, color=col, capsize=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rules (ClassBench-shaped)")
    ax.set_ylabel("packets/s, ratio to bare redirect")
    ax.set_title("Throughput as rules grow (every packet decided)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    save(fig, out, "rules.png", written)

    flows = [c for c in cases if (c["name"].startswith("linkgate-flows-") or c["name"] == "linkgate/64B")
             and None not in c["ratio_to_bare"].values()]
    if flows:
        flows.sort(key=lambda c: c["flows"])
        fig, ax = plt.subplots(figsize=(7, 4))
        xs = [c["flows"] for c in flows]
        r = [c["ratio_to_bare"] for c in flows]
        ax.errorbar(xs, [x["median"] for x in r],
                    yerr=[[x["median"] - x["min"] for x in r], [x["max"] - x["median"] for x in r]],
                    marker="o", capsize=3, color="tab:blue")
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("concurrent established flows (table capacity = flows)")
        ax.set_ylabel("packets/s, ratio to bare redirect")
        ax.set_title("linkgate established throughput as flows grow")
        ax.grid(True, which="both", alpha=0.3)
        save(fig, out, "flows.png", written)


def cost(sec, out, written):
    cases = [c for c in sec["cases"] if "nop" not in c["name"]]
    bare = {c["name"]: c for c in sec["cases"]}.get("bare")
    base = bare["net"]["median"] if bare and bare["net"]["median"] is not None else 0
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(cases) + 1.5))
    names = [c["name"] for c in cases]
    # A bare program lost in the harness's noise (a short --repeat) is no
    # baseline: then the plot shows the net ns themselves.
    div = base if base > 0 else 1

    def q(x):
        return None if x is None else x / div
    bars(ax, names, [q(c["net"]["median"]) for c in cases], [q(c["net"]["min"]) for c in cases],
         [q(c["net"]["max"]) for c in cases], "tab:purple")
    ax.set_xlabel("ns/packet (BPF_PROG_TEST_RUN, net of the harness), ratio to the bare program's median" if base > 0
                  else "ns/packet (BPF_PROG_TEST_RUN, net of the harness); the bare program was not above the "
                  "harness's noise, so no ratio")
    ax.set_title("XDP cost per packet vs the bare forwarding program")
    save(fig, out, "cost.png", written)


def update(sec, out, written):
    lat = sec["latency_ms"]
    keys = [("pec_approve", "PEC approve (socket)"), ("nsg_rule_change", "NSG rule change (socket)"),
            ("full_recompile_apply", "full recompile: apply (socket)"), ("nft_f_linear", "nft -f, linear chain"),
            ("nft_f_set", "nft -f, interval set"), ("cli_pec_approve", "linkgatectl PEC approve (process)"),
            ("cli_nsg_show", "linkgatectl nsg show (process)"), ("socket_nsg_show", "nsg show (socket)")]
    keys = [(k, n) for k, n in keys if lat.get(k)]
    base = lat["nft_f_linear"]["p50"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(keys) + 1.5))
    y = range(len(keys))
    p50 = [lat[k]["p50"] / base for k, _ in keys]
    p99 = [lat[k]["p99"] / base for k, _ in keys]
    ax.barh([i - 0.2 for i in y], p50, height=0.4, label="p50", color="tab:blue")
    ax.barh([i + 0.2 for i in y], p99, height=0.4, label="p99", color="tab:red")
    ax.set_yticks(list(y))
    ax.set_yticklabels([n for _, n in keys], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"latency, ratio to nft -f (linear, {sec['rules']} rules) median; log")
    ax.set_title("Change -> enforced")
    ax.legend()
    save(fig, out, "update.png", written)


def f(x, d=2):
    return "-" if x is None else f"{x:.{d}f}"


def tables(res, out, written):
    L = []
    m = res["machine"]
    L.append(f"Run {res['started']} to {res['finished']}, `{res['command']}`; {m['nproc']} CPUs, {m['cpu_model']}, "
             f"{m['kernel']}; load average {m.get('loadavg_start')} at the start, {m.get('loadavg_end')} at the end.")
    L.append("")
    if res.get("targets"):
        L += ["| target | median | min–max over rounds | bound | met |", "| --- | ---: | ---: | ---: | --- |"]
        for t in res["targets"]:
            sp = t["spread"] or {}
            met = "yes (every round)" if t["met_every_round"] else "median only" if t["met_median"] else "**no**"
            extra = f" (p99 {f(t['value'])})" if "value" in t else ""
            L.append(f"| {t['name']} [{t['section']}] | {f(sp.get('median'))}{extra} | {f(sp.get('min'))}–{f(sp.get('max'))} | "
                     f"{t['op']} {t['target']} | {met} |")
        L.append("")
    secs = res.get("sections", {})
    if "throughput" in secs:
        tp = secs["throughput"]
        L += ["### Throughput (packets/s at the far end, ratio to the bare redirect of the same round)", "",
              "| case | frame | traffic | rules | flows | ratio to bare: median | min–max | not received |",
              "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
        for c in tp["cases"]:
            r = c["ratio_to_bare"]
            L.append(f"| `{c['name']}` | {c['frame_bytes']} | {c['traffic']} | {c['rules']} | {c['flows'] or '-'} | "
                     f"{f(r['median'], 3)} | {f(r['min'], 3)}–{f(r['max'], 3)} | {100 * c['not_received_share']:.1f}% |")
        L += ["", "| ratio | median | min–max |", "| --- | ---: | ---: |"]
        for r in tp["ratios"]:
            sp = r["spread"] or {}
            L.append(f"| {r['name']} | {f(sp.get('median'))} | {f(sp.get('min'))}–{f(sp.get('max'))} |")
        L.append("")
    if "cost" in secs:
        co = secs["cost"]
        L += ["### Cost per packet (BPF_PROG_TEST_RUN, net of the harness)", "",
              "| ratio | median | min–max |", "| --- | ---: | ---: |"]
        for r in co["ratios"]:
            sp = r["spread"] or {}
            L.append(f"| {r['name']} | {f(sp.get('median'))} | {f(sp.get('min'))}–{f(sp.get('max'))} |")
        L.append("")
    if "update" in secs:
        up = secs["update"]
        base = up["latency_ms"]["nft_f_linear"]["p50"]
        L += [f"### Change → enforced ({up['rules']} rules; ratio to the median of `nft -f` with the same rules)", "",
              "| measurement | n | p50 / nft -f | p99 / nft -f | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for k, v in up["latency_ms"].items():
            if v:
                L.append(f"| {k} | {v['n']} | {f(v['p50'] / base)} | {f(v['p99'] / base)} | {f(v['p50'])} | {f(v['p99'])} |")
        cli = up["cli"]
        L += ["", f"linkgatectl process start (spawn to exit minus the same request over an open socket): "
              f"{f(cli['process_start_ms'])} ms, {100 * cli['share_of_cli_pec_approve']:.0f}% of a CLI PEC approve.", ""]
    if res.get("section_errors"):
        L += ["Sections that failed: " + ", ".join(f"{k}: {v}" for k, v in res["section_errors"].items()), ""]
    path = os.path.join(out, "tables.md")
    with open(path, "w") as fh:
        fh.write("\n".join(L) + "\n")
    written.append(path)


def main():
    res = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    written = []
    secs = res.get("sections", {})
    for name, fn in (("throughput", throughput), ("cost", cost), ("update", update)):
        if name in secs:
            fn(secs[name], out, written)
    # Sections this script does not know (e.g. dpdk): their "ratios", if any.
    for name, sec in secs.items():
        if name in ("throughput", "cost", "update") or not isinstance(sec.get("ratios"), list):
            continue
        rs = [r for r in sec["ratios"] if r.get("spread")]
        if not rs:
            continue
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(rs) + 1.5))
        bars(ax, [r["name"] for r in rs], [r["spread"]["median"] for r in rs], [r["spread"]["min"] for r in rs],
             [r["spread"]["max"] for r in rs], "tab:cyan")
        ax.set_title(f"{name}: ratios")
        save(fig, out, f"{name}.png", written)
    tables(res, out, written)
    for w in written:
        print(w)


if __name__ == "__main__":
    main()
