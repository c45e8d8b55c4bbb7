"""PNG figures of a benchmark run (matplotlib, Agg backend).

* curves: test metric against cumulative fit time per dataset, one line per
  library (median over repeats), with the dataset's target as a dashed line;
* throughput: fmnumba's kernels against this machine's gather ceiling and
  the peers' epoch throughput, k = 8 and 64, in nnz·k/s (log scale).
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"fmnumba": "#d62728", "xlearn": "#1f77b4", "modernfm": "#2ca02c", "myfm": "#9467bd",
          "fastfm": "#8c564b"}


def plot_curves(name, task, libs, target, path):
    """libs: {library: aggregated result with 'curve'}; returns path or None."""
    metric = "rmse" if task == "regression" else "auc"
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    drawn = False
    for lib, agg in libs.items():
        pts = [(p["time_s"], p[metric]) for p in agg.get("curve") or []
               if p.get("time_s") is not None and p.get(metric) is not None]
        if not pts:
            continue
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o", ms=3, lw=1.6 if lib == "fmnumba" else 1.1,
                color=COLORS.get(lib), label=f"{lib} ({agg.get('solver') or ''})")
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    if target is not None:
        ax.axhline(target, ls="--", lw=0.9, color="grey", label=f"target {target:.4g}")
    ax.set_xscale("log")
    ax.set_xlabel("cumulative fit time, s (log)")
    ax.set_ylabel(f"test {metric.upper()}")
    ax.set_title(f"{name}: test {metric.upper()} vs fit time")
    if metric == "rmse":
        ys = [p[metric] for a in libs.values() for p in a.get("curve") or [] if p.get(metric)]
        lo = min(ys)
        ax.set_ylim(lo - 0.02 * abs(lo), min(max(ys), lo * 1.5) + 0.01)
    else:
        ys = [p[metric] for a in libs.values() for p in a.get("curve") or [] if p.get(metric)]
        hi = max(ys)
        ax.set_ylim(max(min(ys), hi - 0.1), hi + 0.005)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_throughput(rows, path):
    """rows: [(group label e.g. 'k=8', bar label, nnz·k/s)]; grouped log-scale bars."""
    if not rows:
        return None
    groups = list(dict.fromkeys(r[0] for r in rows))
    labels = list(dict.fromkeys(r[1] for r in rows))
    val = {(g, b): v for g, b, v in rows}
    fig, ax = plt.subplots(figsize=(8.0, 4.4), dpi=110)
    width = 0.8 / max(1, len(labels))
    cmap = plt.get_cmap("tab20")
    for i, b in enumerate(labels):
        xs = [gi + i * width for gi, g in enumerate(groups) if (g, b) in val]
        ys = [val[(g, b)] for g in groups if (g, b) in val]
        ax.bar(xs, ys, width=width, label=b, color=cmap(i % 20),
               edgecolor="black" if "ceiling" in b else None)
    ax.set_yscale("log")
    ax.set_xticks([gi + 0.4 - width / 2 for gi in range(len(groups))])
    ax.set_xticklabels(groups)
    ax.set_ylabel("nnz·k per second (log)")
    ax.set_title("Throughput on the large set vs this machine's gather ceiling")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
