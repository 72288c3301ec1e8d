"""The benchmarks' reports: a markdown table and a PNG chart in ``bench/results/``.

Each report states when and where it was measured (date, CPU model and cores,
OS, the versions of Python, Flask, the servers and tools) and the exact command,
so that a figure can be traced and measured again. The chart is drawn with
matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Panel:
    """One horizontal grouped bar chart: a bar per (category, series) pair.

    ``series`` maps a series' name (a scenario: "read", "write") to one value per
    category (a contender); a missing value is ``None``. ``log`` draws the value
    axis on a log scale (for figures that span orders of magnitude).
    """

    title: str
    unit: str
    categories: list[str]
    series: dict[str, list[float | None]]
    log: bool = False
    marks: dict[str, float] = field(default_factory=dict)  # label -> a vertical line


def command_line() -> str:
    """The command this process runs, as typed from the repository's root (``python ...``)."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(Path(__file__).resolve().parent.parent))
    except ValueError:
        shown = str(script)
    return shlex.join(["python", shown, *sys.argv[1:]])


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()
        # the code measured: the reports in bench/results and the docs leave it as it is
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "src", "bench", ":!bench/results", "pyproject.toml"],
                               cwd=root, text=True, capture_output=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if dirty else "")


def redis_version(url: str) -> str:
    """The Redis server's version at ``url``, or why it is unknown."""
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()
    except Exception as err:  # report what is known; never fail a finished run here
        return f"unknown ({type(err).__name__})"


def postgres_version(url: str) -> str:
    """The PostgreSQL server's version at ``url``, or why it is unknown."""
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "unknown"
    except Exception as err:
        return f"unknown ({type(err).__name__})"


def environment(*, redis_url: str | None = None, postgres_url: str | None = None,
                extra: dict[str, str] | None = None) -> dict[str, str]:
    """What a report says of where it ran: date (UTC), machine, OS, versions, commit.

    ``redis_url`` / ``postgres_url`` add those servers' versions (asked now);
    ``extra`` adds or overrides lines (a tool's version, say).
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    versions = {
        "Python": platform.python_version(),
        "Flask": _version("flask"),
        "Werkzeug": _version("werkzeug"),
        "satchel": _version("satchel"),
        "Flask-Session": _version("flask-session"),
    }
    if redis_url:
        versions["Redis"] = redis_version(redis_url)
    if postgres_url:
        versions["PostgreSQL"] = postgres_version(postgres_url)
    info = {
        "Date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "Machine": f"{_cpu_model()}, {os.cpu_count()} cores",
        "OS": f"{platform.system()} {platform.release()} {platform.machine()}",
        "Versions": ", ".join(f"{name} {value}" for name, value in versions.items()),
        "Commit": _git_commit(),
    }
    return info | (extra or {})


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def chart(path: Path, title: str, panels: Sequence[Panel]) -> None:
    """Draw ``panels`` side by side into the PNG ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(len(panel.categories) for panel in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 1.2 + 0.45 * rows),
                             squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        count = len(panel.series)
        height = 0.8 / max(count, 1)
        for index, (name, values) in enumerate(panel.series.items()):
            ys = [i + (index - (count - 1) / 2) * height for i in range(len(values))]
            ax.barh(ys, [v or 0.0 for v in values], height=height, label=name)
        for label, x in panel.marks.items():
            ax.axvline(x, color="grey", linestyle="--", linewidth=1)
            ax.text(x, -0.9, label, color="grey", fontsize=8, ha="center")
        ax.set_yticks(range(len(panel.categories)), panel.categories)
        ax.invert_yaxis()
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.unit)
        if panel.log:
            ax.set_xscale("log")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(out: Path, name: str, *, title: str, env: dict[str, str], command: str, body: str,
          panels: Sequence[Panel]) -> Path:
    """Write ``out/name.md`` (``env``, ``command``, the chart, ``body``) and ``out/name.png``.

    ``out`` is created if missing; existing files of that name are replaced.
    Returns the markdown file's path.
    """
    out.mkdir(parents=True, exist_ok=True)
    chart(out / f"{name}.png", title, panels)
    head = "".join(f"- {key}: {value}\n" for key, value in env.items())
    text = (f"# {title}\n\n{head}- Command: `{command}`\n\n![{title}]({name}.png)\n\n{body}")
    markdown = out / f"{name}.md"
    markdown.write_text(text)
    return markdown
