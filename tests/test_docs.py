"""README.md and docs/*.md kept true to the code, so that drift fails CI.

Read as data (no network, no database; Django's settings are used to read the management
commands' parsers, the settings' names and the beat schedule, and to import the code names):

1. every relative link resolves: the file, and the anchor as GitHub makes it from a heading;
   the README links every page of docs/ and every screenshot; so does every
   ``docs/page.md#section`` the code refers to;
2. every ``manage.py <command> --flag`` names a command and options its parser accepts,
   and every ``--flag`` after ``bench/*.py`` or ``scripts/*.py`` is one of the script's;
3. every repository path shown in backticks or code blocks exists, and every test named
   (``tests/test_x.py::test_name``) is defined there;
4. docs/settings.md names exactly the environment variables the code reads
   (tests/test_deploy.py's ``_variables_read``, the list .env.example is held to), and the
   README's configuration table only variables the code reads;
5. every ``make <target>`` shown is a Makefile target, and docs/operations.md names every
   periodic (beat) job;
6. every dotted name of the project's code shown (``tickets.services.message_add``) can be
   imported, or is a model label or a system check id.
"""

from __future__ import annotations

import importlib
import os
import re
import tomllib
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.test_deploy import _variables_read

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Page:
    path: Path
    text: str

    @property
    def name(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


@cache
def _page(path: Path) -> Page:
    return Page(path, path.read_text())


_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


@cache
def _line_kinds(text: str) -> tuple[tuple[str, str], ...]:
    """Each line with its kind: "fence" (a fence's opening or closing line), "code" (inside
    a fenced block, or an indented block: four spaces after a blank line), "blank" or
    "prose"."""
    kinds: list[tuple[str, str]] = []
    fence = ""
    for line in text.splitlines():
        match = _FENCE.match(line)
        previous = kinds[-1][0] if kinds else "blank"
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = ""
                kinds.append(("fence", line))
            else:
                kinds.append(("code", line))
        elif match:
            fence = match.group(1)
            kinds.append(("fence", line))
        elif not line.strip():
            kinds.append(("blank", line))
        elif line.startswith("    ") and (previous == "blank" or previous == "code"):
            kinds.append(("code", line))
        else:
            kinds.append(("prose", line))
    # An indented block ends at the first prose line; blank lines inside it stay blank.
    return tuple(kinds)


def _prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of the prose: outside fenced and indented code blocks."""
    for number, (kind, line) in enumerate(_line_kinds(text), 1):
        if kind == "prose":
            yield number, line


def _paragraphs(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each run of prose lines."""
    start, lines = 0, []
    for number, (kind, line) in enumerate(_line_kinds(text), 1):
        if kind == "prose":
            start = start or number
            lines.append(line)
        elif lines:
            yield start, "\n".join(lines)
            start, lines = 0, []
    if lines:
        yield start, "\n".join(lines)


_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)


def _code_spans(text: str) -> Iterator[tuple[int, str]]:
    """(line number, content) of the inline code spans of the prose; a span broken over
    two lines is one span (its line break a space), numbered by the line it starts on."""
    for start, paragraph in _paragraphs(text):
        for match in _CODE_SPAN.finditer(paragraph):
            number = start + paragraph.count("\n", 0, match.start())
            yield number, " ".join(match.group(2).split())


# --- 1. Links --------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: the rendered text (links to their text, inline
    code to its content), lower case, every character that is not a letter, digit,
    underscore, hyphen or space dropped, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.strip().lower()
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in " -_" or category[0] in "LNM":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    text = _page(path).text
    for _, line in _prose_lines(text):
        match = _HEADING.match(line)
        if match:
            slug = github_anchor(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            out.add(slug if count == 0 else f"{slug}-{count}")
        out.update(_HTML_ANCHOR.findall(line))
    return frozenset(out)


_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"
)
_REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")


def _links(page: Page) -> Iterator[tuple[int, str]]:
    for start, paragraph in _paragraphs(page.text):
        bare = _CODE_SPAN.sub(lambda span: "\n" * span.group(0).count("\n"), paragraph)
        for offset, line in enumerate(bare.split("\n")):
            for link in _INLINE_LINK.finditer(line):
                yield start + offset, link.group(1)
            reference = _REFERENCE_LINK.match(line)
            if reference:
                yield start + offset, reference.group(1)


def _is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)) or target.startswith("//")


def link_problems() -> tuple[int, list[str]]:
    checked = 0
    problems = []
    for path in DOCS:
        page = _page(path)
        for number, target in _links(page):
            if _is_external(target):
                continue
            checked += 1
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            where = f"{page.name}:{number}: {target}"
            if not resolved.is_relative_to(ROOT):
                problems.append(f"{where}: points outside the repository")
            elif not resolved.exists():
                problems.append(f"{where}: no such file")
            elif anchor:
                if resolved.suffix != ".md":
                    # Line anchors on source files (#L10) are GitHub's; they go stale silently.
                    problems.append(f"{where}: an anchor into a file that is not a page")
                elif anchor not in anchors(resolved):
                    problems.append(f"{where}: no heading makes the anchor #{anchor}")
    return checked, problems


def test_github_anchor_follows_githubs_rules() -> None:
    assert github_anchor("Reply drafts (`knowledge/drafts.py`, `knowledge/draft_services.py`)") == (
        "reply-drafts-knowledgedraftspy-knowledgedraft_servicespy"
    )
    assert github_anchor("Events out: EventBridge, outgoing webhooks, Kafka") == (
        "events-out-eventbridge-outgoing-webhooks-kafka"
    )
    assert github_anchor("Web chat: visitors, anonymous until verified") == (
        "web-chat-visitors-anonymous-until-verified"
    )
    assert github_anchor("Providers (`AI_PROVIDER`)") == "providers-ai_provider"
    assert github_anchor("Soak — 24 h, 2 cores") == "soak--24-h-2-cores"
    assert github_anchor("See [the API](api.md)") == "see-the-api"


def test_duplicate_headings_are_numbered(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Setup\n\n```\n# not a heading\n```\n## Setup\n### Setup\n")
    assert anchors(page) == {"setup", "setup-1", "setup-2"}


def test_every_relative_link_resolves() -> None:
    checked, problems = link_problems()
    assert checked > 100
    assert problems == [], "\n".join(problems)


def test_the_readme_links_every_page_of_docs_and_shows_its_screenshots() -> None:
    readme = _page(ROOT / "README.md")
    targets = {target.partition("#")[0] for _, target in _links(readme)}
    pages = {path.relative_to(ROOT).as_posix() for path in DOCS[1:]}
    assert sorted(pages - targets) == []
    images = {path.relative_to(ROOT).as_posix() for path in (ROOT / "docs" / "img").glob("*.png")}
    assert sorted(images - targets) == []


_SOURCE_SUFFIXES = {".py", ".html", ".js", ".css", ".sh", ".yaml", ".yml", ".toml", ".example"}
_NOT_SOURCE_DIRS = {"node_modules", "staticfiles", "media", "test-artifacts", "__pycache__"}
# Not right after a quote: "docs/returns.md" in a test is a knowledge-base file's name.
_DOC_REFERENCE = re.compile(r"(?<![\"'\w/.-])docs/([\w-]+\.md)(?:#([\w-]+))?")


def _source_files() -> Iterator[Path]:
    """The repository's own source files (hidden and generated folders left out)."""
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _NOT_SOURCE_DIRS]
        for name in files:
            path = Path(folder) / name
            is_source = path.suffix in _SOURCE_SUFFIXES or name == "Makefile"
            if is_source and path != Path(__file__).resolve():  # not this file's examples
                yield path
    yield ROOT / ".env.example"


def code_reference_problems() -> tuple[int, list[str]]:
    """``docs/page.md#section`` written in the code (comments, docstrings, messages):
    the page and the heading exist."""
    checked = 0
    problems = []
    for path in _source_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for match in _DOC_REFERENCE.finditer(line):
                checked += 1
                page = ROOT / "docs" / match.group(1)
                where = f"{path.relative_to(ROOT).as_posix()}:{number}: {match.group(0)}"
                if not page.exists():
                    problems.append(f"{where}: no such page")
                elif match.group(2) and match.group(2) not in anchors(page):
                    problems.append(f"{where}: no heading makes the anchor #{match.group(2)}")
    return checked, problems


def test_every_reference_from_the_code_to_a_page_resolves() -> None:
    checked, problems = code_reference_problems()
    assert checked > 100
    assert problems == [], "\n".join(problems)


# --- 2. manage.py commands and their flags ----------------------------------------------

_MANAGE = re.compile(r"manage\.py\s+([a-z][a-z0-9_]*)((?:(?!manage\.py).)*)")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _command_lines(page: Page) -> Iterator[tuple[int, str, bool]]:
    """(line, text, is_code): the code spans; the lines of fenced and indented code blocks,
    a line ending in a backslash joined with the next; and the prose around the spans."""
    for number, span in _code_spans(page.text):
        yield number, span, True
    for start, paragraph in _paragraphs(page.text):
        bare = _CODE_SPAN.sub(lambda span: "\n" * span.group(0).count("\n"), paragraph)
        for offset, line in enumerate(bare.split("\n")):
            yield start + offset, line, False
    kinds = _line_kinds(page.text)
    logical: list[tuple[int, str]] = []
    for number, (kind, line) in enumerate(kinds, 1):
        if kind != "code":
            continue
        previous = logical[-1] if logical else None
        joined = previous is not None and previous[0] + previous[1].count("\n") + 1 == number
        if (
            joined
            and previous is not None
            and (previous[1].endswith("\\") or re.match(r"\s+\[?--", line))
        ):
            # a backslash continuation, or options wrapped onto an indented next line
            logical[-1] = (previous[0], previous[1].removesuffix("\\") + "\n" + line)
        else:
            logical.append((number, line))
    for number, line in logical:
        yield number, line.replace("\n", " "), True


def _code_lines() -> Iterator[tuple[Page, int, str]]:
    """(page, line, text) of every line of code (a fenced block or a backticked span) on
    the pages of ``DOCS``: what the checks of flags, paths, tests, make targets and code
    names read."""
    for path in DOCS:
        page = _page(path)
        for number, text, is_code in _command_lines(page):
            if is_code:
                yield page, number, text


def _command_snippets(page: Page) -> Iterator[tuple[int, str, list[str]]]:
    """(line, command, --flags) for every ``manage.py <command>`` on the page: in code the
    flags written after it (up to a pipe, ``&&``, ``;``, a redirection or a comment); in
    plain prose the name only."""
    for number, text, is_code in _command_lines(page):
        for match in _MANAGE.finditer(text):
            tail = re.split(r"\s(?:\||&&|;|>|#)|`", match.group(2))[0] if is_code else ""
            yield number, match.group(1), _FLAG.findall(tail)


@cache
def command_options(name: str) -> frozenset[str] | None:
    """The option strings ``manage.py <name>`` accepts, or None for no such command."""
    from django.core.management import get_commands, load_command_class

    app = get_commands().get(name)
    if app is None:
        return None
    command = load_command_class(app, name)
    parser = command.create_parser("manage.py", name)
    return frozenset(option for action in parser._actions for option in action.option_strings)


def command_problems() -> tuple[int, int, list[str]]:
    commands = flags = 0
    problems = []
    for path in DOCS:
        page = _page(path)
        for number, name, shown in _command_snippets(page):
            commands += 1
            options = command_options(name)
            where = f"{page.name}:{number}: manage.py {name}"
            if options is None:
                problems.append(f"{where}: no such management command")
                continue
            for flag in shown:
                flags += 1
                if flag not in options:
                    problems.append(f"{where}: {flag} is not one of its options")
    return commands, flags, problems


def test_flags_are_read_from_the_shown_command_only() -> None:
    page = Page(
        ROOT / "x.md",
        "Run `python manage.py kb_eval --k 5 [--json] [--mode a|b]` then `--other`;\n"
        "prose manage.py migrate --fake\n"
        "```sh\npython manage.py kb_ingest docs/ \\\n  --source faq  # --not-this\n```\n"
        "\n    manage.py check --deploy | grep --count x && manage.py shell --no-startup\n"
        "    manage.py kb_reembed [--source NAME]\n        [--batch 256]  # wrapped\n",
    )
    assert list(_command_snippets(page)) == [
        (1, "kb_eval", ["--k", "--json", "--mode"]),
        (2, "migrate", []),
        (4, "kb_ingest", ["--source"]),
        (8, "check", ["--deploy"]),
        (8, "shell", ["--no-startup"]),
        (9, "kb_reembed", ["--source", "--batch"]),
    ]
    options = command_options("kb_eval")
    assert options is not None
    assert "--drafts" in options
    assert "--no-such-flag" not in options
    assert command_options("no_such_command") is None


def test_every_manage_py_command_shown_exists_with_the_flags_shown() -> None:
    commands, flags, problems = command_problems()
    assert commands > 50
    assert flags > 30
    assert problems == [], "\n".join(problems)


_SCRIPT = re.compile(r"((?:bench|scripts)/[\w/]+\.py)((?:(?!(?:bench|scripts)/[\w/]+\.py).)*)")


def script_flag_problems() -> tuple[int, list[str]]:
    """The same for ``bench/*.py`` and ``scripts/*.py``, which are not management commands
    (importing them would run them): each flag shown must be an option string of the
    script's source (``"--runs"``)."""
    checked = 0
    problems = []
    for page, number, text in _code_lines():
        for match in _SCRIPT.finditer(text):
            script = ROOT / match.group(1)
            if not script.exists():
                continue  # test_every_repository_path_shown_exists says so
            source = script.read_text()
            tail = re.split(r"\s(?:\||&&|;|>|#)|`", match.group(2))[0]
            for flag in _FLAG.findall(tail):
                checked += 1
                if f'"{flag}"' not in source and f"'{flag}'" not in source:
                    problems.append(f"{page.name}:{number}: {match.group(1)} has no option {flag}")
    return checked, problems


def test_every_bench_and_script_flag_shown_exists() -> None:
    checked, problems = script_flag_problems()
    assert checked > 150
    assert problems == [], "\n".join(problems)


# --- 3. Repository paths in backticks -----------------------------------------------------

# Paths that name no file of this repository on purpose. Each entry says why.
NOT_REPOSITORY_FILES = {
    # Written at run time (`make run`, the benches), never committed (.gitignore).
    ".devdata/",
    "staticfiles/",
    # Keys in the calls bucket (S3), not files here; the app's folder has the same name.
    "calls/results/",
}

_TOKEN_SPLIT = re.compile(r"[\s=`|]+|::|,(?![^{}]*\})")


@cache
def _top_level() -> frozenset[str]:
    return frozenset(
        entry.name for entry in ROOT.iterdir() if entry.name not in {".git", ".venv"}
    ) - {prefix.strip("/") for prefix in NOT_REPOSITORY_FILES if prefix.count("/") == 1}


def repository_paths(text: str) -> Iterator[str]:
    """The words of a code snippet that name a path in this repository: a relative path
    whose first part is one of the repository's top-level folders or files. Placeholders
    (``<name>``, ``$VAR``, ``...``) name none."""
    for word in _TOKEN_SPLIT.split(text):
        word = word.strip(".,;:()[]\"'")
        word = re.sub(r":\d+(-\d+)?$", "", word)  # path.py:123
        if "/" not in word or re.search(r"[<>$…]|\.\.\.|^~|^/", word):
            continue
        if word.split("/")[0] not in _top_level():
            continue
        if any(word.startswith(prefix) for prefix in NOT_REPOSITORY_FILES):
            continue
        yield word


def _expand_braces(word: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", word)
    if not match:
        return [word]
    return [
        expanded
        for choice in match.group(1).split(",")
        for expanded in _expand_braces(word[: match.start()] + choice + word[match.end() :])
    ]


def path_exists(word: str) -> bool:
    """The path exists in the repository: as written from the root, or, for a template or
    static file named the way Django looks it up, under a templates/ or static/ folder."""
    app = word.split("/")[0]
    roots = [ROOT] + [
        ROOT / place / kind for place in (".", app) for kind in ("templates", "static")
    ]
    for candidate in _expand_braces(word):
        if not any(
            any(root.glob(candidate))
            if "*" in candidate or "?" in candidate
            else (root / candidate).exists()
            for root in roots
        ):
            return False
    return True


def path_problems() -> tuple[int, list[str]]:
    checked = 0
    problems = []
    for page, number, text in _code_lines():
        for word in repository_paths(text):
            checked += 1
            if not path_exists(word):
                problems.append(f"{page.name}:{number}: `{word}` does not exist")
    return checked, problems


def test_repository_paths_are_recognised() -> None:
    words = list(
        repository_paths(
            "python bench/kb.py --out=bench/out.json support/env.py:42 "
            "channels_app/adapters/<channel>/doc.md .devdata/mail/ /opt/minilm "
            "tests/test_docs.py::test_x services.py ~/bench/x $DATA_DIR/x"
        )
    )
    assert words == ["bench/kb.py", "bench/out.json", "support/env.py", "tests/test_docs.py"]
    assert path_exists("channels_app/adapters/email/{adapter,parsing}.py")
    assert path_exists("knowledge/draft_panel.html")  # knowledge/templates/knowledge/
    assert path_exists("deploy/ecs/*.json")
    assert not path_exists("channels_app/adapters/email/{adapter,nothing}.py")
    assert not path_exists("bench/no_such_bench.py")


def test_every_repository_path_shown_exists() -> None:
    checked, problems = path_problems()
    assert checked > 400
    assert problems == [], "\n".join(problems)


_TEST_ID = re.compile(r"((?:[\w.-]+/)*[\w.-]+\.py)?::(\w+)")


def test_id_problems() -> tuple[int, list[str]]:
    """``tests/test_x.py::test_name`` (and ``::other`` after it, same file): the test
    function or class is defined in that file."""
    checked = 0
    problems = []
    for page, number, text in _code_lines():
        file = None
        for match in _TEST_ID.finditer(text):
            file = match.group(1) or file
            if file is None or not (ROOT / file).is_file():
                continue  # no file named: the paths test covers a wrong one
            checked += 1
            name = match.group(2)
            if not re.search(
                rf"^\s*(?:async\s+)?(?:def|class)\s+{name}\b",
                (ROOT / file).read_text(),
                re.MULTILINE,
            ):
                problems.append(f"{page.name}:{number}: {file} defines no {name}")
    return checked, problems


def test_every_test_named_exists() -> None:
    checked, problems = test_id_problems()
    assert checked > 50
    assert problems == [], "\n".join(problems)


# --- 4. docs/settings.md and the README's configuration table ---------------------------

# Upper-case names on docs/settings.md that are not variables of this application, on
# purpose. Each says why.
NOT_VARIABLES = {
    "MAX_RETRIES",  # seed 004's constant, which TICKETING_SYNC_MAX_RETRIES stands for
    "RETRY_DELAY_BASE",  # seed 004's constant, which TICKETING_SYNC_RETRY_DELAY_BASE stands for
    "CERT_REQUIRED",  # the ssl module's value CELERY_BROKER_USE_SSL is given
    "CALLS_BEDROCK_MODEL_ID",  # named as removed, so that an operator who still sets it knows
}

# The seed designs' own variable names, which docs/settings.md maps to this project's
# settings ("The seeds' names for these settings"): named there so that an operator
# coming from a seed finds the setting, and read nowhere on purpose.
SEED_NAMES = {
    "S3_OUTPUT_BUCKET",
    "BEDROCK_PROJECT_ARN",
    "DYNAMODB_TABLE_NAME",
    "EVENTBRIDGE_BUS_NAME",
    "BEDROCK_MODEL_ID",
    "BEDROCK_REGION",
    "TICKETING_SYSTEM_ENDPOINT",
    "TICKETING_SYSTEM_API_KEY_SECRET",
    "SERVICE_STATUS_ENDPOINT",
    "CUSTOMER_DB_ENDPOINT",
    "ROUTING_DECISIONS_TABLE",
}

_SCRIPT_READ = re.compile(r'os\.environ(?:\.get\(|\[)\s*"([A-Z][A-Z0-9_]*)"')


@cache
def variables_read() -> frozenset[str]:
    """What the deployed code reads from the environment (tests/test_deploy.py's list, the
    one .env.example is held to)."""
    return frozenset(_variables_read())


@cache
def names_the_project_knows() -> frozenset[str]:
    """Variables the code reads, those the local scripts read (scripts/services.py's Redis
    ports), and Django settings (a page may name ``MIDDLEWARE`` or ``EMAIL_BACKEND``)."""
    from django.conf import settings

    scripts = {
        name
        for path in (ROOT / "scripts").glob("*.py")
        for name in _SCRIPT_READ.findall(path.read_text())
    }
    django_settings = {name for name in dir(settings) if name.isupper()}
    return variables_read() | scripts | django_settings


_VARIABLE = re.compile(r"(?<![\w$])[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+(?![\w*])")


def _variables_named(text: str) -> Iterator[tuple[int, str]]:
    """(line, name) of the variable-like names (``UPPER_CASE``) in the page's code spans."""
    for number, span in _code_spans(text):
        for name in _VARIABLE.findall(span):
            yield number, name


def settings_problems() -> tuple[int, list[str]]:
    page = _page(ROOT / "docs" / "settings.md")
    known = names_the_project_knows()
    checked = 0
    problems = []
    for number, name in _variables_named(page.text):
        checked += 1
        if name not in known and name not in NOT_VARIABLES and name not in SEED_NAMES:
            problems.append(f"{page.name}:{number}: {name} is read nowhere")
    named = set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", page.text))
    for name in sorted(variables_read() - named):
        problems.append(f"{page.name}: {name} is read by the code and named nowhere here")
    return checked, problems


def test_docs_settings_names_exactly_the_variables_the_code_reads() -> None:
    assert {"DB_PORT", "KB_EMBEDDER", "PORT", "KB_SQS_QUEUE_URL"} <= variables_read()
    checked, problems = settings_problems()
    assert checked > 250
    assert problems == [], "\n".join(problems)


def test_docs_settings_maps_each_seed_name_to_a_setting_or_says_there_is_none() -> None:
    """Each row of the seed-name table names one seed variable (read nowhere here) and,
    on the right, variables this project reads, or says there is no setting."""
    page = _page(ROOT / "docs" / "settings.md").text
    table = page.split("## The seeds' names for these settings", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| 00")]
    seen = set()
    problems = []
    for _seed, seed_name, ours in rows:
        name = seed_name.strip("`")
        seen.add(name)
        if name in variables_read():
            problems.append(f"{name}: a seed's name that the code reads after all")
        mapped = re.findall(r"`([A-Z][A-Z0-9_]+)`", ours)
        if not ours.startswith("no setting") and not mapped:
            problems.append(f"{name}: maps to no variable")
        problems += [f"{name} -> {m}: read nowhere" for m in mapped if m not in variables_read()]
    assert sorted(SEED_NAMES - seen) == []
    assert problems == [], "\n".join(problems)


def test_the_readme_configuration_table_names_variables_the_code_reads() -> None:
    page = _page(ROOT / "README.md")
    table = page.text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) > 15
    problems = []
    for row in rows:
        for name in re.findall(r"`([A-Z][A-Z0-9_]*\*?)`", row):
            if name.endswith("*"):
                found = any(read.startswith(name[:-1]) for read in variables_read())
            else:
                found = name in variables_read()
            if not found:
                problems.append(f"README.md: {name} in the configuration table is read nowhere")
    assert problems == [], "\n".join(problems)


def test_docs_operations_names_every_periodic_job() -> None:
    from django.conf import settings

    page = _page(ROOT / "docs" / "operations.md").text
    named = set(re.findall(r"^\| `([a-z0-9-]+)` \|", page, re.MULTILINE))
    assert sorted(set(settings.CELERY_BEAT_SCHEDULE) - named) == []


# --- 5. make targets ----------------------------------------------------------------------

# `make` as the command: first on the line, or after `&&`, `;`, `|`, `(`, or VAR=value.
_MAKE = re.compile(
    r"(?:^|[;&|(])\s*(?:[A-Z_][A-Z0-9_]*=\S*\s+)*make\s+([a-z][\w.-]*)", re.MULTILINE
)


@cache
def makefile_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([a-zA-Z][\w.-]*)\s*:(?!=)", text, re.MULTILINE))


def make_problems() -> tuple[int, list[str]]:
    checked = 0
    problems = []
    for page, number, text in _code_lines():
        for target in _MAKE.findall(text):
            checked += 1
            if target not in makefile_targets():
                problems.append(f"{page.name}:{number}: `make {target}` is not a target")
    return checked, problems


def test_make_is_read_as_a_command_only() -> None:
    text = "make run && ENVIRONMENT=dev make test; apt-get install make python3 | (make stop)"
    assert _MAKE.findall(text) == ["run", "test", "stop"]


def test_every_make_target_shown_exists() -> None:
    assert {"run", "test", "stop", "audit"} <= makefile_targets()
    checked, problems = make_problems()
    assert checked > 20
    assert problems == [], "\n".join(problems)


# --- 6. Dotted names of the code ----------------------------------------------------------

# Dotted words on the pages that start like a package of ours and name no code, on purpose.
NOT_CODE_NAMES = {
    "routing.decided",  # an event type
    "support.request",  # a logger's name
    "support.ticketing",  # the EventBridge source of our events
    "support.local",  # the Message-ID domain of a local install
    "tickets.recent",  # a key of the customer context's JSON
    "calls.services.X",  # "any name X" the calls.services package re-exports
}


@cache
def _packages() -> tuple[str, ...]:
    """The project's own packages: import-linter's root packages (pyproject.toml)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return tuple(pyproject["tool"]["importlinter"]["root_packages"])


def code_names(text: str) -> Iterator[str]:
    packages = "|".join(_packages())
    for match in re.finditer(rf"(?<![\w./-])((?:{packages})(?:\.[A-Za-z_]\w*)+)(?![\w/])", text):
        name = match.group(1)
        if not re.search(r"\.(py|md|json|jsonl|html|js|css|yaml|txt|csv|eml|png|sh)$", name):
            yield name


def _has_attributes(found: object, attributes: list[str]) -> bool:
    for attribute in attributes:
        if not hasattr(found, attribute):
            return False
        found = getattr(found, attribute)
    return True


@cache
def code_name_exists(name: str) -> bool:
    """An importable module and its attributes, a model label and its attributes
    (``tickets.Message.created_at``) or a system check id (``routing.E001``)."""
    from django.apps import apps

    if re.fullmatch(r"\w+\.[EW]\d{3}", name):
        return True
    parts = name.split(".")
    try:
        return _has_attributes(apps.get_model(".".join(parts[:2])), parts[2:])
    except (LookupError, ValueError):
        pass
    for cut in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        return _has_attributes(module, parts[cut:])
    return False


def code_name_problems() -> tuple[int, list[str]]:
    checked = 0
    problems = []
    for page, number, text in _code_lines():
        for name in code_names(text):
            checked += 1
            if name not in NOT_CODE_NAMES and not code_name_exists(name):
                problems.append(f"{page.name}:{number}: `{name}` is no name in the code")
    return checked, problems


def test_code_names_are_recognised() -> None:
    text = "tickets.services.message_add(...), routing/panel.js, support.env.py, x.support.env"
    assert list(code_names(text)) == ["tickets.services.message_add"]
    assert code_name_exists("support.env.get_str")
    assert code_name_exists("tickets.Message")
    assert code_name_exists("tickets.Message.created_at")
    assert not code_name_exists("tickets.Message.no_such_field")
    assert code_name_exists("routing.E001")
    assert not code_name_exists("support.env.no_such_reader")
    assert not code_name_exists("support.no_such_module")


def test_every_code_name_shown_exists() -> None:
    checked, problems = code_name_problems()
    assert checked > 150
    assert problems == [], "\n".join(problems)
