"""`include:` of further files and `defaults:` for targets: the merged config is what
slamon runs, and an error in an included file names that file and its own index."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from slamon.config.loader import ConfigError, load_config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path / "targets.d" / "a.yaml", """\
        targets:
          - {id: shop, kind: http, http: {url: "https://shop.example/"}}
          - id: db
            kind: tcp
            interval: 10s
            labels: {tier: data}
            tcp: {host: 127.0.0.1, port: 5432}
        """)
    write(tmp_path / "targets.d" / "b.yaml", """\
        targets:
          - id: api
            kind: http
            http: {url: "https://api.example/", valid_status_codes: [200]}
        slos:
          - {id: api, targets: [api], objective: 0.99, window: 7d}
        """)
    write(tmp_path / "slos.yaml", """\
        slos:
          - {id: shop, targets: [shop, db], objective: 0.999, window: 30d}
        """)
    return tmp_path


def main_config(tree: Path, extra: str = "") -> Path:
    return write(tree / "slamon.yaml", """\
        include: ["targets.d/*.yaml", slos.yaml]
        defaults:
          targets:
            interval: 30s
            timeout: 5s
            labels: {team: shop, tier: web}
            http: {valid_status_codes: [2xx], max_response_time: 2s}
        targets:
          - {id: home, kind: http, http: {url: "https://www.example/"}, labels: {team: www}}
        """ + extra)


def test_included_lists_and_defaults_merge(tree: Path) -> None:
    config = load_config(main_config(tree))
    assert [t.id for t in config.targets] == ["home", "shop", "db", "api"]
    assert [s.id for s in config.slos] == ["api", "shop"]
    by_id = {t.id: t for t in config.targets}
    # defaults fill what a target leaves out; mappings merge key by key
    assert by_id["shop"].interval == 30 and by_id["shop"].timeout == 5
    assert by_id["home"].labels == {"team": "www", "tier": "web"}
    assert by_id["db"].labels == {"team": "shop", "tier": "data"}
    assert by_id["db"].interval == 10  # its own value wins
    assert by_id["shop"].http is not None and by_id["shop"].http.max_response_time == 2
    assert by_id["api"].http is not None and by_id["api"].http.valid_status_codes == [200]
    # the http defaults do not reach a tcp target
    assert by_id["db"].http is None and by_id["db"].tcp is not None


def test_error_in_an_included_file_names_it(tree: Path) -> None:
    write(tree / "targets.d" / "b.yaml", """\
        targets:
          - {id: api, kind: http, timeout: 1m, http: {url: "https://api.example/"}}
        """)
    with pytest.raises(ConfigError) as info:
        load_config(main_config(tree))
    assert any(line.startswith(f"{tree / 'targets.d' / 'b.yaml'}: targets[0].timeout")
               for line in info.value.errors), info.value.errors


@pytest.mark.parametrize(
    ("extra_file", "content", "include", "message"),
    [
        ("server.yaml", "server: {listen: '0.0.0.0:1'}\n", "server.yaml",
         "server: an included file holds only targets, slos, slas, maintenance"),
        ("nested.yaml", "include: [x.yaml]\n", "nested.yaml",
         "include: an included file holds only"),
        ("list.yaml", "targets: {id: x}\n", "list.yaml", "targets: must be a list"),
        (None, "", "missing.yaml", "include[0]: missing.yaml: file not found"),
        ("bad.yaml", "targets: [\n", "bad.yaml", "line"),
    ],
)
def test_include_problems(tmp_path: Path, extra_file: str | None, content: str, include: str,
                          message: str) -> None:
    if extra_file:
        write(tmp_path / extra_file, content)
    cfg = write(tmp_path / "slamon.yaml", f"include: [{include}]\n"
                "targets: [{id: t, kind: tcp, tcp: {host: 127.0.0.1, port: 1}}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert any(message in line for line in info.value.errors), info.value.errors


def test_a_glob_matching_nothing_is_fine(tmp_path: Path) -> None:
    cfg = write(tmp_path / "slamon.yaml", "include: [conf.d/*.yaml]\n"
                "targets: [{id: t, kind: tcp, tcp: {host: 127.0.0.1, port: 1}}]\n")
    assert [t.id for t in load_config(cfg).targets] == ["t"]


def test_defaults_problems(tmp_path: Path) -> None:
    for text, message in (
        ("defaults: {slos: {}}\n", "defaults: may only hold"),
        ("defaults: {targets: {id: x}}\n", "defaults.targets.id"),
        ("defaults: {targets: {interval: -1s}}\n", "targets[0].interval"),
    ):
        cfg = write(tmp_path / "slamon.yaml",
                    text + "targets: [{id: t, kind: tcp, tcp: {host: 127.0.0.1, port: 1}}]\n")
        with pytest.raises(ConfigError) as info:
            load_config(cfg)
        assert any(message in line for line in info.value.errors), (text, info.value.errors)
