"""What the template checks read from the workspace: the Cargo manifests, CargoLambda.toml, and the
Rust sources that list the metrics items-api emits and the variables each function reads.

Each reader fails loudly when it finds nothing: a reader that quietly falls back to a list of its own
would keep passing after the code it mirrors has changed. Source files are found by what they
declare, anywhere under the crate's src/, so moving a module does not break the reader.
"""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class ReaderFoundNothing(AssertionError):
    """The Rust source no longer has what a reader looks for: update the reader, not the check."""


def workspace_binaries(root=ROOT):
    """Binary name -> package name for every member of the workspace (explicit [[bin]] and the
    implicit src/main.rs / src/bin/*.rs ones)."""
    members = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["members"]
    bins = {}
    for member in members:
        manifest = tomllib.loads((root / member / "Cargo.toml").read_text())
        package = manifest["package"]["name"]
        explicit = manifest.get("bin", [])
        for b in explicit:
            bins[b["name"]] = package
        if manifest["package"].get("autobins", True):
            paths = {b.get("path") for b in explicit}
            if (root / member / "src" / "main.rs").exists() and "src/main.rs" not in paths:
                bins.setdefault(package, package)
            for f in sorted((root / member / "src" / "bin").glob("*.rs")):
                bins.setdefault(f.stem, package)
    return bins


def package_features(root=ROOT):
    """Package name -> its [features] table."""
    members = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["members"]
    out = {}
    for member in members:
        manifest = tomllib.loads((root / member / "Cargo.toml").read_text())
        out[manifest["package"]["name"]] = manifest.get("features", {})
    return out


def cargo_lambda_build(root=ROOT):
    """The [build] table every `cargo lambda build` (so `sam build`) reads from CargoLambda.toml."""
    path = root / "CargoLambda.toml"
    if not path.exists():
        return {}
    return tomllib.loads(path.read_text()).get("build", {})


def _sources(root, crate):
    src = root / "crates" / crate / "src"
    files = sorted(src.rglob("*.rs"))
    if not files:
        raise ReaderFoundNothing(f"no Rust sources under {src}")
    return files


def emitted_metrics(root=ROOT):
    """Metric names items-api emits: the `pub const NAME: &str = "Name";` items of the db-credentials
    module named metric.rs (wherever it sits under src/)."""
    files = [f for f in _sources(root, "db-credentials") if f.name == "metric.rs"]
    if len(files) != 1:
        raise ReaderFoundNothing(f"expected one metric.rs under crates/db-credentials/src, found {[str(f) for f in files]}")
    names = set(re.findall(r'pub const [A-Z_]+: &str = "([A-Za-z]+)";', files[0].read_text()))
    if not names:
        raise ReaderFoundNothing(f"{files[0]} declares no `pub const NAME: &str = \"Metric\";`")
    return names


def _string_list_consts(root, crate, name):
    """The strings of every `pub const <name>: [&str; N] = [...]` / `&[&str] = &[...]` in the crate."""
    pattern = re.compile(rf"pub const {name}: &?\[&str(?:; *\d+)?\] = &?\[(.*?)\];", re.S)
    found, where = set(), []
    for f in _sources(root, crate):
        for block in pattern.findall(f.read_text()):
            found |= set(re.findall(r'"([A-Z0-9_]+)"', block))
            where.append(f.relative_to(root))
    if not found:
        raise ReaderFoundNothing(f"no `pub const {name}: [&str; N]` list under crates/{crate}/src")
    return found, where


def known_api_vars(root=ROOT):
    """Every variable items-api's credential configuration reads: `KNOWN_VARS` of db-credentials."""
    return _string_list_consts(root, "db-credentials", "KNOWN_VARS")[0]


def known_rotation_vars(root=ROOT):
    """Every variable the rotation function reads: the union of the crate's `VARS` lists (today in
    config.rs and password.rs)."""
    return _string_list_consts(root, "rotation", "VARS")[0]


def github_anchors(markdown_path):
    """The anchors GitHub gives the headings of a Markdown file (lower case, punctuation dropped,
    spaces to hyphens, -1, -2 for repeats)."""
    anchors, seen = set(), {}
    in_code = False
    for line in Path(markdown_path).read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        m = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower().replace("`", "")).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors
