"""Terraform provider schemas without a provider download, and a schema check of .tf files.

`terraform init` cannot fetch providers here, so neither `terraform validate` nor `terraform test` can run.
The prebuilt CDKTF bindings on PyPI (cdktf-cdktf-provider-<name>) are generated from a provider release's
real schema, and each ships it as a jsii assembly (_jsii/*.jsii.tgz, the `package/.jsii` JSON inside). In
that assembly every resource and data source is a class whose docs link to its registry page, whose
initializer takes a `<Name>Config` struct, and every struct property (argument or nested block) carries a
doc link ending in `#<terraform_name>`: the HCL name, exact even where CDKTF renamed the property. Required
arguments and blocks are the non-optional properties; a nested block is a property typed as another
struct of the assembly, a single struct when the block takes at most one instance (MaxItems 1), a list
otherwise. Computed-only attributes are not in the config structs at all, so setting one is flagged, as
terraform would. Enum arguments of Magic Modules resources list their values in the docs, which are
checked against constant strings.

Not in the assembly, so not checked: attribute types, ConflictsWith / ExactlyOneOf / RequiredWith, other
validators (ranges, regexes), MinItems above one, deprecations.

The assembly is read straight from the installed files: the package is never imported (that would start
the jsii Node.js runtime) and nothing extracted from it is stored in the repository.
"""

from __future__ import annotations

import difflib
import functools
import gzip
import importlib.metadata
import json
import re
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import hcl2

# Provider source address -> the PyPI distribution with its prebuilt CDKTF bindings.
PACKAGES = {
    "hashicorp/google": "cdktf-cdktf-provider-google",
    "hashicorp/google-beta": "cdktf-cdktf-provider-google-beta",
    "hashicorp/archive": "cdktf-cdktf-provider-archive",
}

# terraform_data is built into Terraform (provider terraform.io/builtin/terraform), not in any package.
BUILTIN_SOURCE = "terraform.io/builtin/terraform"

RESOURCE_META = frozenset(
    {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
)
DATA_META = frozenset({"count", "for_each", "depends_on", "provider", "lifecycle"})
PROVIDER_META = frozenset({"alias", "version"})
DYNAMIC_KEYS = frozenset({"for_each", "iterator", "labels", "content"})

_CLASS_DOC = re.compile(
    r"Represents a \{@link https://registry\.terraform\.io/providers/(?P<source>[\w-]+/[\w-]+)/(?P<version>[^/]+)"
    r"/docs(?:/(?P<kind>resources|data-sources)/\w+)? (?P<type>[\w-]+)\}"
)
# "{@link https://registry.terraform.io/.../storage_bucket#lifecycle_rule StorageBucket#lifecycle_rule}"
_PROPERTY_LINK = re.compile(r"\{@link https://registry\.terraform\.io/\S+#(\w+) \w+#\1\}")
# Magic Modules documents an enum, which the provider validates (verify.ValidateEnum), as
# 'Possible values: ["A", "B"]'. Free-text lists ("Supported values include ...") are not validated.
_POSSIBLE_VALUES = re.compile(r'Possible values: \[((?:"[^"]*"(?:, )?)+)\]')


# --- schema -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """An argument, or a nested block when `block` names its struct."""

    name: str
    required: bool
    block: str | None = None
    single: bool = False
    choices: tuple[str, ...] = ()  # an enum's "Possible values" (validated by the provider), else empty


@dataclass(frozen=True)
class Block:
    fields: Mapping[str, Field]


@dataclass
class ProviderSchema:
    source: str
    version: str  # the provider release the bindings were generated from
    package: str  # distribution name and version
    resources: dict[str, str] = field(default_factory=dict)  # terraform type -> config struct
    data_sources: dict[str, str] = field(default_factory=dict)
    provider_config: str | None = None
    structs: dict[str, Block] = field(default_factory=dict)

    def block(self, struct: str) -> Block:
        return self.structs[struct]

    def lookup(self, kind: str, type_: str) -> Block | None:
        table = self.resources if kind == "resource" else self.data_sources
        struct = table.get(type_)
        return None if struct is None else self.structs[struct]


def assembly_file(distribution: str) -> Path | None:
    """The installed jsii assembly tarball of a CDKTF provider package, None when it is not installed."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name.endswith(".jsii.tgz") and "_jsii" in entry.parts:
            return Path(str(dist.locate_file(entry)))
    return None


def _read_assembly(tarball: Path) -> dict[str, Any]:
    # Stream the tarball: package/.jsii comes first, so the rest (the bindings' JavaScript) is never inflated.
    wanted = "package/.jsii"
    redirect: dict[str, Any] | None = None
    with tarfile.open(tarball, "r|gz") as tar:
        for member in tar:
            if member.name != wanted:
                continue
            handle: IO[bytes] | None = tar.extractfile(member)
            assert handle is not None, f"{tarball}: {wanted} is not a file"
            raw = handle.read()
            if redirect is not None:  # a compressed assembly behind a jsii/file-redirect
                return dict(
                    json.loads(gzip.decompress(raw) if redirect.get("compression") == "gzip" else raw)
                )
            doc = json.loads(raw)
            if doc.get("schema") != "jsii/file-redirect":
                return dict(doc)
            redirect = doc
            wanted = "package/" + str(doc["filename"])
    raise AssertionError(f"{tarball}: no jsii assembly ({wanted}) inside")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _struct_refs(type_ref: Mapping[str, Any]) -> Iterable[str]:
    if "fqn" in type_ref:
        yield type_ref["fqn"]
    if "collection" in type_ref:
        yield from _struct_refs(type_ref["collection"]["elementtype"])
    for member in type_ref.get("union", {}).get("types", ()):
        yield from _struct_refs(member)


def parse_assembly(assembly: Mapping[str, Any], source: str) -> ProviderSchema:
    types: Mapping[str, Any] = assembly["types"]
    structs = {fqn for fqn, t in types.items() if t.get("kind") == "interface" and t.get("datatype")}
    schema = ProviderSchema(source=source, version="", package=f"{assembly['name']}@{assembly['version']}")

    for t in types.values():
        if t.get("kind") != "class":
            continue
        match = _CLASS_DOC.match(t.get("docs", {}).get("summary", ""))
        if match is None or match["source"] != source:
            continue
        params = t.get("initializer", {}).get("parameters", [])
        config = next((p["type"].get("fqn") for p in params if p["name"] == "config"), None)
        if config not in structs:
            continue
        schema.version = match["version"]
        if match["kind"] == "resources":
            schema.resources[match["type"]] = config
        elif match["kind"] == "data-sources":
            schema.data_sources[match["type"]] = config
        else:
            schema.provider_config = config

    def properties(fqn: str) -> Iterable[Mapping[str, Any]]:
        yield from types[fqn].get("properties", ())
        for parent in types[fqn].get("interfaces", ()):  # outside ones (cdktf.TerraformMetaArguments) skipped
            if parent in structs:
                yield from properties(parent)

    for fqn in structs:
        fields: dict[str, Field] = {}
        for prop in properties(fqn):
            docs = prop.get("docs", {})
            link = _PROPERTY_LINK.search(json.dumps(docs))
            enum = _POSSIBLE_VALUES.search(f"{docs.get('summary', '')} {docs.get('remarks', '')}")
            name = link.group(1) if link else _snake(prop["name"])
            nested = next((r for r in _struct_refs(prop["type"]) if r in structs), None)
            fields[name] = Field(
                name=name,
                required=not prop.get("optional", False),
                block=nested,
                single=nested is not None and prop["type"].get("fqn") == nested,
                choices=tuple(re.findall(r'"([^"]*)"', enum.group(1))) if enum else (),
            )
        schema.structs[fqn] = Block(fields)
    return schema


@functools.cache
def provider_schema(source: str) -> ProviderSchema | None:
    """The schema of a provider (source address), loaded once per process; None without its package."""
    if source == BUILTIN_SOURCE:
        return _builtin_schema()
    distribution = PACKAGES.get(source)
    tarball = assembly_file(distribution) if distribution else None
    if tarball is None:
        return None
    return parse_assembly(_read_assembly(tarball), source)


def _builtin_schema() -> ProviderSchema:
    # Its two arguments, as documented for Terraform >= 1.4 (no package ships this schema).
    block = Block({"input": Field("input", False), "triggers_replace": Field("triggers_replace", False)})
    schema = ProviderSchema(source=BUILTIN_SOURCE, version="builtin", package="terraform")
    schema.resources["terraform_data"] = "terraform_data"
    schema.structs["terraform_data"] = block
    return schema


def constraint_allows(constraint: str, version: str) -> bool:
    """Whether a Terraform version constraint (">= 6.0, < 7.0", "~> 2.4") admits a version."""

    def parse(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.strip().split("-")[0].split("."))

    def pad(numbers: tuple[int, ...]) -> tuple[int, ...]:
        return numbers + (0,) * (3 - len(numbers))

    have = pad(parse(version))
    for clause in constraint.split(","):
        match = re.fullmatch(r"\s*(>=|<=|!=|~>|>|<|=)?\s*([\d.]+)\s*", clause)
        assert match is not None, f"cannot read version constraint {constraint!r}"
        op, bound = match[1] or "=", parse(match[2])
        want = pad(bound)
        if op == "~>":
            upper = (*bound[:-2], bound[-2] + 1) if len(bound) > 1 else (bound[0] + 1,)
            ok = want <= have < pad(upper)
        else:
            ok = {
                "=": have == want,
                "!=": have != want,
                ">": have > want,
                ">=": have >= want,
                "<": have < want,
                "<=": have <= want,
            }[op]
        if not ok:
            return False
    return True


# --- configuration ----------------------------------------------------------------------------------


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _is_block_list(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and v.get("__is_block__") for v in value)
    )


def _literal_strings(value: object) -> list[str]:
    """The constant strings of a value: a literal, or the literals of a list; expressions are skipped."""
    values = value if isinstance(value, list) else [value]
    return [
        v[1:-1]
        for v in values
        if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == '"' and "${" not in v and "%{" not in v
    ]


@dataclass(frozen=True)
class Problem:
    file: str
    address: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.address}.{self.path}" if self.path else self.address
        return f"{self.file}: {where}: {self.message}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # "file: address"
    unchecked: list[str] = field(default_factory=list)  # "file: address: why"
    providers: dict[str, ProviderSchema] = field(default_factory=dict)  # source -> schema used


def load_module(folder: Path) -> dict[Path, dict[str, Any]]:
    """Raw python-hcl2 documents of one module's .tf files."""
    documents = {}
    for path in sorted(folder.glob("*.tf")):
        with path.open() as handle:
            documents[path] = hcl2.load(handle)
    return documents


def module_folders(root: Path) -> list[Path]:
    """root and every folder below it holding .tf files (skipping hidden ones such as .terraform)."""
    folders = {
        p.parent for p in root.rglob("*.tf") if not any(s.startswith(".") for s in p.relative_to(root).parts)
    }
    return sorted(folders)


def provider_sources(documents: Mapping[Path, Mapping[str, Any]]) -> dict[str, str]:
    """Local provider name -> source address, from a module's required_providers."""
    sources: dict[str, str] = {}
    for doc in documents.values():
        for terraform in doc.get("terraform", ()):
            for required in terraform.get("required_providers", ()):
                for local, spec in required.items():
                    if local.startswith("__"):
                        continue
                    source = _unquote(str(spec.get("source", ""))) if isinstance(spec, dict) else ""
                    sources[local] = source or f"hashicorp/{local}"
    return sources


def _source_of(type_: str, body: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    if type_ == "terraform_data":
        return BUILTIN_SOURCE
    provider = body.get("provider")
    local = (
        _unquote(str(provider)).removeprefix("${").removesuffix("}").split(".")[0]
        if provider is not None
        else type_.split("_", maxsplit=1)[0]
    )
    return sources.get(local, f"hashicorp/{local}")


class _Checker:
    def __init__(self, schema: ProviderSchema, report: Report, file: str, address: str) -> None:
        self.schema, self.report, self.file, self.address = schema, report, file, address

    def problem(self, path: Iterable[str], message: str) -> None:
        self.report.problems.append(Problem(self.file, self.address, ".".join(path), message))

    def body(
        self, body: Mapping[str, Any], block: Block, path: tuple[str, ...], meta: frozenset[str] = frozenset()
    ) -> None:
        present = set()
        for key, value in body.items():
            if key.startswith("__") or key in meta:
                continue
            if key == "dynamic":
                present |= self.dynamic(value, block, path)
                continue
            present.add(key)
            spec = block.fields.get(key)
            if spec is None:
                self.problem((*path, key), self.unknown(key, block))
            elif spec.block is not None:
                if not _is_block_list(value):
                    self.problem((*path, key), f"is a block: write `{key} {{ ... }}`, not `{key} = ...`")
                    continue
                if spec.single and len(value) > 1:
                    self.problem((*path, key), f"at most one `{key}` block is allowed, found {len(value)}")
                for instance in value:
                    self.body(instance, self.schema.block(spec.block), (*path, key))
            elif _is_block_list(value):
                self.problem((*path, key), f"is an argument: write `{key} = ...`, not a block")
            elif spec.choices:
                for literal in _literal_strings(value):
                    if literal not in spec.choices and literal != "":  # ValidateEnum also takes ""
                        self.problem(
                            (*path, key),
                            f"{literal!r} is not one of the documented values {', '.join(spec.choices)}",
                        )
        for name, spec in sorted(block.fields.items()):
            if spec.required and name not in present:
                kind = "block" if spec.block else "argument"
                self.problem((*path, name), f"required {kind} `{name}` is missing")

    def dynamic(self, entries: object, block: Block, path: tuple[str, ...]) -> set[str]:
        labels = set()
        for entry in entries if isinstance(entries, list) else ():
            for quoted, dyn in entry.items():
                if quoted.startswith("__"):
                    continue
                label = _unquote(quoted)
                labels.add(label)
                where = (*path, f'dynamic "{label}"')
                spec = block.fields.get(label)
                if spec is None or spec.block is None:
                    why = (
                        self.unknown(label, block)
                        if spec is None
                        else f"`{label}` is an argument, not a block"
                    )
                    self.problem(where, f"dynamic block: {why}")
                    continue
                for key in dyn:
                    if not key.startswith("__") and key not in DYNAMIC_KEYS:
                        self.problem(where, f"unsupported argument `{key}` in a dynamic block")
                if "for_each" not in dyn or "content" not in dyn:
                    self.problem(where, "a dynamic block needs `for_each` and a `content` block")
                for content in dyn.get("content", ()):
                    self.body(content, self.schema.block(spec.block), (*path, label))
        return labels

    @staticmethod
    def unknown(key: str, block: Block) -> str:
        close = difflib.get_close_matches(key, list(block.fields), n=1)
        hint = f" (did you mean `{close[0]}`?)" if close else ""
        return f"unsupported argument or block `{key}`{hint}"


def check_tree(root: Path, schemas: Callable[[str], ProviderSchema | None] = provider_schema) -> Report:
    """Check every resource, data source and provider block of every module under root."""
    report = Report()
    for folder in module_folders(root):
        documents = load_module(folder)
        sources = provider_sources(documents)
        for path, doc in documents.items():
            file = path.relative_to(root).as_posix()
            for provider in doc.get("provider", ()):
                for quoted, body in provider.items():
                    if quoted.startswith("__"):
                        continue
                    local = _unquote(quoted)
                    _check_one(
                        report,
                        schemas,
                        sources.get(local, f"hashicorp/{local}"),
                        "provider",
                        local,
                        "",
                        body,
                        file,
                    )
            for kind in ("resource", "data"):
                for entry in doc.get(kind, ()):
                    for type_quoted, named in entry.items():
                        type_ = _unquote(type_quoted)
                        for name_quoted, body in named.items():
                            if name_quoted.startswith("__"):
                                continue
                            source = _source_of(type_, body, sources)
                            _check_one(
                                report, schemas, source, kind, type_, _unquote(name_quoted), body, file
                            )
    return report


def _check_one(
    report: Report,
    schemas: Callable[[str], ProviderSchema | None],
    source: str,
    kind: str,
    type_: str,
    name: str,
    body: Mapping[str, Any],
    file: str,
) -> None:
    address = {
        "resource": f"{type_}.{name}",
        "data": f"data.{type_}.{name}",
        "provider": f'provider "{type_}"',
    }[kind]
    schema = schemas(source)
    if schema is None:
        report.unchecked.append(f"{file}: {address}: no schema for provider {source} (package not installed)")
        return
    report.providers[source] = schema
    if kind == "provider":
        if schema.provider_config is None:
            report.unchecked.append(f"{file}: {address}: {schema.package} has no provider config")
            return
        block, meta = schema.block(schema.provider_config), PROVIDER_META
    else:
        found = schema.lookup(kind, type_)
        if found is None:
            what = "resource type" if kind == "resource" else "data source"
            close = difflib.get_close_matches(
                type_, list(schema.resources if kind == "resource" else schema.data_sources), n=1
            )
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            report.problems.append(
                Problem(
                    file, address, "", f"provider {source} {schema.version} has no {what} `{type_}`{hint}"
                )
            )
            return
        block, meta = found, RESOURCE_META if kind == "resource" else DATA_META
    report.checked.append(f"{file}: {address}")
    _Checker(schema, report, file, address).body(body, block, (), meta)
