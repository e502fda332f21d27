#!/usr/bin/env python3
"""test/validate_meta.py: check a META.json against the PGXN Meta Spec 1.0.0.

    python3 test/validate_meta.py [META.json]        the spec's rules
    python3 test/validate_meta.py --dist DIR         and, for the distribution
                                                     unpacked in DIR, regstack's
    python3 test/validate_meta.py --self-test        the validator itself

No validator for PGXN metadata is packaged in Debian or on npm (PGXN's own,
PGXN::Meta::Validator, is a Perl module on CPAN), so this one is written
from the spec (https://pgxn.org/spec/): required and optional keys and
their types (String, List, Map, Term, Tag, URI, Version, Version Range,
License String), custom keys (x_ or X_ only), semantic versions, the
prereqs structure (phase -> relationship -> extension -> version range),
release_status, resources and no_index.

--dist DIR adds what the spec leaves to the distribution: the files that
provides names exist in DIR, and the versions agree with regstack.control
(extension version 1.1 is distribution version 1.1.0).

Prints one line per error and exits 1 if there is any, else prints
"<path> is valid" and exits 0.
"""

import json
import os
import re
import sys

SPEC_VERSION = "1.0.0"

# Semantic Versioning 2.0.0 (https://semver.org/), as the spec requires.
SEMVER = (r"(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)"
          r"(?:-(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
          r"(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*)?"
          r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?")
VERSION_RE = re.compile(r"\A" + SEMVER + r"\Z")
# One clause of a Version Range: an optional operator and a version.
RANGE_CLAUSE_RE = re.compile(r"\A(?:(?:==|!=|<=|>=|<|>)\s*)?" + SEMVER + r"\Z")
URI_RE = re.compile(r"\A[A-Za-z][A-Za-z0-9+.-]*:\S+\Z")
CUSTOM_RE = re.compile(r"\Ax_", re.IGNORECASE)
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

LICENSE_STRINGS = {
    "agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd",
    "freebsd", "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1",
    "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5",
    "postgresql", "qpl_1_0", "ssleay", "sun", "zlib",
    "open_source", "restricted", "unrestricted", "unknown",
}
PHASES = {"configure", "build", "test", "runtime", "develop"}
RELATIONSHIPS = {"requires", "recommends", "suggests", "conflicts"}
RELEASE_STATUSES = {"stable", "testing", "unstable"}


class Checker:
    """Collects the errors of one metadata structure."""

    def __init__(self):
        self.errors = []

    def error(self, path, message):
        self.errors.append(f"{path}: {message}")

    # Primitive and derived types of the spec's "Data Types" section.

    def string(self, path, value):
        if not isinstance(value, str) or value == "":
            self.error(path, f"must be a non-empty String, not {json.dumps(value)}")
            return False
        return True

    def as_list(self, path, value):
        """A List; a String counts as a List of one (the spec says so)."""
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            self.error(path, f"must be a List, not {json.dumps(value)}")
            return None
        return value

    def map(self, path, value):
        if not isinstance(value, dict):
            self.error(path, f"must be a Map, not {json.dumps(value)}")
            return False
        return True

    def term(self, path, value):
        if self.string(path, value) and (
                len(value) < 2 or re.search(r"[/\\\s]", value) or CONTROL_RE.search(value)):
            self.error(path, f"{value!r} is not a Term (two or more characters, "
                             "no slash, backslash, space or control character)")

    def tag(self, path, value):
        if self.string(path, value) and (
                len(value) >= 256 or re.search(r"[/\\]", value) or CONTROL_RE.search(value)):
            self.error(path, f"{value!r} is not a Tag (under 256 characters, "
                             "no slash, backslash or control character)")

    def uri(self, path, value):
        if self.string(path, value) and not URI_RE.match(value):
            self.error(path, f"{value!r} is not a URI")

    def version(self, path, value):
        if self.string(path, value) and not VERSION_RE.match(value):
            self.error(path, f"{value!r} is not a semantic version (e.g. 1.2.0)")

    def version_range(self, path, value):
        if value == 0 and not isinstance(value, bool):
            return
        if not self.string(path, value):
            return
        if value == "0":
            return
        for clause in value.split(","):
            if not RANGE_CLAUSE_RE.match(clause.strip()):
                self.error(path, f"{value!r} is not a Version Range "
                                 f"(clause {clause.strip()!r})")

    def path(self, path, value):
        """A relative path with unix conventions."""
        if self.string(path, value) and (
                value.startswith("/") or "\\" in value or ".." in value.split("/")):
            self.error(path, f"{value!r} is not a relative unix path inside the distribution")

    def keys(self, path, value, allowed, required=()):
        """Required keys present; others allowed or custom (x_)."""
        for key in required:
            if key not in value:
                self.error(path, f"required key {key!r} is missing")
        for key in value:
            if key not in allowed and not CUSTOM_RE.match(key):
                self.error(path, f"key {key!r} is not in the spec (custom keys start with x_)")

    # The structure.

    def meta(self, meta):
        if not self.map("META", meta):
            return
        required = ("abstract", "maintainer", "license", "provides", "meta-spec",
                    "name", "version")
        optional = ("description", "generated_by", "tags", "no_index", "prereqs",
                    "release_status", "resources")
        self.keys("META", meta, required + optional, required)

        spec = meta.get("meta-spec")
        if spec is not None and self.map("meta-spec", spec):
            self.keys("meta-spec", spec, ("version", "url"), ("version",))
            if "version" in spec and spec["version"] != SPEC_VERSION:
                self.error("meta-spec.version",
                           f"{spec['version']!r}: this validator knows {SPEC_VERSION} only")
            if "url" in spec:
                self.uri("meta-spec.url", spec["url"])

        if "name" in meta:
            self.term("name", meta["name"])
        if "version" in meta:
            self.version("version", meta["version"])
        for key in ("abstract", "description", "generated_by"):
            if key in meta:
                self.string(key, meta[key])

        if "maintainer" in meta:
            maintainers = self.as_list("maintainer", meta["maintainer"])
            if maintainers is not None:
                if not maintainers:
                    self.error("maintainer", "must list one or more maintainers")
                for i, m in enumerate(maintainers):
                    self.string(f"maintainer[{i}]", m)

        if "license" in meta:
            self.license(meta["license"])
        if "provides" in meta:
            self.provides(meta["provides"])
        if "prereqs" in meta:
            self.prereqs(meta["prereqs"])

        if "release_status" in meta and meta["release_status"] not in RELEASE_STATUSES:
            self.error("release_status", f"{meta['release_status']!r} is not one of "
                                         f"{', '.join(sorted(RELEASE_STATUSES))}")
        if "tags" in meta:
            tags = self.as_list("tags", meta["tags"])
            for i, t in enumerate(tags or []):
                self.tag(f"tags[{i}]", t)
        if "no_index" in meta and self.map("no_index", meta["no_index"]):
            self.keys("no_index", meta["no_index"], ("file", "directory"))
            for key in ("file", "directory"):
                if key in meta["no_index"]:
                    for i, p in enumerate(self.as_list(f"no_index.{key}",
                                                       meta["no_index"][key]) or []):
                        self.path(f"no_index.{key}[{i}]", p)
        if "resources" in meta:
            self.resources(meta["resources"])

    def license(self, value):
        if isinstance(value, dict):
            if not value:
                self.error("license", "must name one or more licenses")
            for name, url in value.items():
                self.string(f"license name {name!r}", name)
                self.uri(f"license.{name}", url)
            return
        licenses = self.as_list("license", value)
        if licenses is None:
            return
        if not licenses:
            self.error("license", "must name one or more licenses")
        for i, lic in enumerate(licenses):
            if lic not in LICENSE_STRINGS:
                self.error(f"license[{i}]", f"{lic!r} is not a License String of the spec")

    def provides(self, value):
        if not self.map("provides", value):
            return
        if not value:
            self.error("provides", "must describe one or more extensions")
        for name, ext in value.items():
            path = f"provides.{name}"
            self.term(f"provides key {name!r}", name)
            if not self.map(path, ext):
                continue
            self.keys(path, ext, ("file", "version", "abstract", "docfile"),
                      ("file", "version"))
            if "file" in ext:
                self.path(f"{path}.file", ext["file"])
            if "docfile" in ext:
                self.path(f"{path}.docfile", ext["docfile"])
            if "version" in ext:
                self.version(f"{path}.version", ext["version"])
            if "abstract" in ext:
                self.string(f"{path}.abstract", ext["abstract"])

    def prereqs(self, value):
        if not self.map("prereqs", value):
            return
        for phase, relations in value.items():
            if CUSTOM_RE.match(phase):
                continue
            if phase not in PHASES:
                self.error("prereqs", f"phase {phase!r} is not one of "
                                      f"{', '.join(sorted(PHASES))}")
                continue
            if not self.map(f"prereqs.{phase}", relations):
                continue
            for rel, exts in relations.items():
                if CUSTOM_RE.match(rel):
                    continue
                if rel not in RELATIONSHIPS:
                    self.error(f"prereqs.{phase}", f"relationship {rel!r} is not one of "
                                                   f"{', '.join(sorted(RELATIONSHIPS))}")
                    continue
                if not self.map(f"prereqs.{phase}.{rel}", exts):
                    continue
                for ext, rng in exts.items():
                    self.term(f"prereqs.{phase}.{rel} key {ext!r}", ext)
                    self.version_range(f"prereqs.{phase}.{rel}.{ext}", rng)

    def resources(self, value):
        if not self.map("resources", value):
            return
        self.keys("resources", value, ("homepage", "bugtracker", "repository"))
        if "homepage" in value:
            self.uri("resources.homepage", value["homepage"])
        bt = value.get("bugtracker")
        if bt is not None and self.map("resources.bugtracker", bt):
            self.keys("resources.bugtracker", bt, ("web", "mailto"))
            if "web" in bt:
                self.uri("resources.bugtracker.web", bt["web"])
            if "mailto" in bt and self.string("resources.bugtracker.mailto", bt["mailto"]) \
                    and not re.match(r"\A[^@\s]+@[^@\s]+\Z", bt["mailto"]):
                self.error("resources.bugtracker.mailto", f"{bt['mailto']!r} is not an email address")
        repo = value.get("repository")
        if repo is not None and self.map("resources.repository", repo):
            self.keys("resources.repository", repo, ("url", "web", "type"))
            for key in ("url", "web"):
                if key in repo:
                    self.uri(f"resources.repository.{key}", repo[key])
            if "type" in repo and self.string("resources.repository.type", repo["type"]) \
                    and repo["type"] != repo["type"].lower():
                self.error("resources.repository.type", "must be lower case")
            if "url" in repo and "type" not in repo:
                self.error("resources.repository", "a url should come with its type")


def check_dist(meta, root):
    """regstack's own rules for the distribution unpacked at root."""
    errors = []
    for name, ext in (meta.get("provides") or {}).items():
        for key in ("file", "docfile"):
            if isinstance(ext, dict) and isinstance(ext.get(key), str) \
                    and not os.path.isfile(os.path.join(root, ext[key])):
                errors.append(f"provides.{name}.{key}: {ext[key]} is not in the distribution")
    control = os.path.join(root, "regstack.control")
    try:
        with open(control, encoding="utf-8") as f:
            m = re.search(r"^default_version\s*=\s*'([^']*)'", f.read(), re.MULTILINE)
    except OSError as e:
        return errors + [f"regstack.control: {e}"]
    if not m:
        return errors + ["regstack.control: no default_version"]
    extversion = m.group(1)
    # The extension's X.Y is the distribution's X.Y.0.
    semver = extversion + ".0" if re.fullmatch(r"\d+\.\d+", extversion) else extversion
    ext = (meta.get("provides") or {}).get("regstack") or {}
    if meta.get("version") != semver:
        errors.append(f"version: {meta.get('version')!r}, but regstack.control's "
                      f"default_version {extversion!r} means {semver!r}")
    if ext.get("version") != semver:
        errors.append(f"provides.regstack.version: {ext.get('version')!r}, expected {semver!r}")
    if ext.get("file") != f"sql/regstack--{extversion}.sql":
        errors.append(f"provides.regstack.file: {ext.get('file')!r}, expected "
                      f"'sql/regstack--{extversion}.sql' (the install script of {extversion})")
    return errors


def validate(meta):
    checker = Checker()
    checker.meta(meta)
    return checker.errors


def self_test(meta_path):
    """The real META.json passes, the spec's synopsis passes, and each
    mutation below, one mistake each, is caught."""
    with open(meta_path, encoding="utf-8") as f:
        good = json.load(f)
    synopsis = {
        "name": "pgTAP", "abstract": "Unit testing for PostgreSQL",
        "version": "0.26.0",
        "maintainer": ["David E. Wheeler <theory@pgxn.org>"],
        "license": {"PostgreSQL": "https://www.postgresql.org/about/licence"},
        "prereqs": {"runtime": {"requires": {"plpgsql": 0, "PostgreSQL": "8.0.0"},
                                "recommends": {"PostgreSQL": "8.4.0"}}},
        "provides": {"pgtap": {"file": "sql/pgtap.sql", "docfile": "doc/pgtap.mmd",
                               "version": "0.2.4", "abstract": "Unit testing assertions"}},
        "resources": {"homepage": "https://pgtap.org/",
                      "bugtracker": {"web": "https://github.com/theory/pgtap/issues"},
                      "repository": {"url": "https://github.com/theory/pgtap.git",
                                     "web": "https://github.com/theory/pgtap", "type": "git"}},
        "generated_by": "David E. Wheeler",
        "meta-spec": {"version": "1.0.0", "url": "https://pgxn.org/meta/spec.txt"},
        "tags": ["testing", "unit testing", "tap"],
    }

    def mutated(change):
        meta = json.loads(json.dumps(good))
        change(meta)
        return meta

    bad = {
        "no license": lambda m: m.pop("license"),
        "license string not in the spec": lambda m: m.update(license="PostgreSQL"),
        "version not semver": lambda m: m.update(version="1.1"),
        "name with a space": lambda m: m.update(name="reg stack"),
        "unknown top-level key": lambda m: m.update(homepage="https://example.org/"),
        "provides without file": lambda m: m["provides"]["regstack"].pop("file"),
        "absolute provides file": lambda m: m["provides"]["regstack"].update(file="/sql/x.sql"),
        "prereq range with a bad operator": lambda m: m["prereqs"]["runtime"]["requires"]
            .update(PostgreSQL="=> 15.4.0"),
        "prereq phase not in the spec": lambda m: m["prereqs"].update(install={}),
        "meta-spec 2.0.0": lambda m: m["meta-spec"].update(version="2.0.0"),
        "release_status not in the spec": lambda m: m.update(release_status="final"),
        "empty maintainer list": lambda m: m.update(maintainer=[]),
    }
    failures = []
    for label, meta in (("this META.json", good), ("the spec's synopsis", synopsis)):
        errors = validate(meta)
        if errors:
            failures.append(f"{label} should pass: {errors}")
    for label, change in bad.items():
        if not validate(mutated(change)):
            failures.append(f"not caught: {label}")
    custom = mutated(lambda m: m.update(x_regstack={"anything": 1}))
    if validate(custom):
        failures.append("a custom x_ key should pass")
    for line in failures:
        print(line)
    print(f"self-test: {len(bad)} mistakes, "
          f"{'all caught' if not failures else str(len(failures)) + ' problem(s)'}")
    return 1 if failures else 0


def main(argv):
    args = argv[1:]
    if args[:1] == ["--self-test"]:
        return self_test(args[1] if len(args) > 1 else "META.json")
    dist = None
    if args[:1] == ["--dist"] and len(args) == 2:
        dist = args[1]
        path = os.path.join(dist, "META.json")
    elif len(args) <= 1 and not (args and args[0].startswith("-")):
        path = args[0] if args else "META.json"
    else:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{path}: {e}")
        return 1
    errors = validate(meta)
    if dist is not None:
        errors += check_dist(meta, dist)
    for line in errors:
        print(f"{path}: {line}")
    if errors:
        return 1
    print(f"{path} is valid (PGXN Meta Spec {SPEC_VERSION})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
