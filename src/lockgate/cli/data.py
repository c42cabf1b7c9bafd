"""``lockgate data``: validate data against contracts, register and check contracts, and see
which contract version each data set version passed.

The validation engine (DuckDB) and the HTML report (plotly) are imported inside the commands
that use them, so ``lockgate --help`` and every other noun start without them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lockgate.cli._context import state
from lockgate.cli._output import JsonOpt, Output, short, table
from lockgate.clock import to_iso
from lockgate.data import Contract, ContractRegistry, IncompatibleContract, RegisteredContract, Violation
from lockgate.data._compat import parse_mode
from lockgate.data._registry import parse_contract_ref
from lockgate.data._report import verdict
from lockgate.data._wording import share
from lockgate.data._wording import value as shown
from lockgate.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from lockgate.data import ValidationReport

__all__ = ["app"]

app = typer.Typer(
    help="Data contracts and the data gate: validate, contract register|check|infer|show|list, versions.\n\n"
    "Example: lockgate data validate data/2026-11-28.parquet --contract contracts/transactions.yaml "
    "--reference transactions@latest"
)
contract_app = typer.Typer(
    help="Data contracts: register, check, infer, show, list.\n\n"
    "Example: lockgate data contract check contracts/transactions.yaml --against-registered --mode backward"
)
app.add_typer(contract_app, name="contract")

ContractFile = Annotated[Path, typer.Argument(help="A contract YAML file.", show_default=False)]


def _when(ms: int | None) -> str:
    return (to_iso(ms) or "")[:16].replace("T", " ")


# -- validate ------------------------------------------------------------------------------------


@app.command()
def validate(
    ctx: typer.Context,
    path: Annotated[
        str, typer.Argument(help="The data: a Parquet/CSV/Arrow file or folder, s3://…, or postgresql://… with --query")
    ],
    contract: Annotated[
        str, typer.Option("--contract", "-c", help="A contract YAML file, or a registered NAME or NAME@VERSION.")
    ],
    reference: Annotated[
        str | None,
        typer.Option(help="What drift-style rules compare with: a data set (transactions@latest) or a data path."),
    ] = None,
    query: Annotated[
        str | None, typer.Option(help="For a postgresql:// PATH: the SQL query whose rows are checked.")
    ] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write the report as an HTML page here.")] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="When the data passes, register it as a version of this data set, recording the contract it passed.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check data against a contract; exit 1 when an error-level rule fails.

    Example: lockgate data validate data/2026-11-28.parquet --contract transactions --reference transactions@latest
    """
    from lockgate.data._report import report_html, report_json

    st = state(ctx)
    ws = st.workspace()
    data: Any = path
    if query is not None:
        from lockgate.data._sources import Source

        data = Source.parse(path, query)
    admitted_as: str | None = None
    if dataset is not None:
        admission = ws.data.admit(data, name=dataset, contract=contract, reference=reference)
        report = admission.report
        admitted_as = admission.dataset.uri if admission.dataset is not None else None
    else:
        report = ws.data.validate(data, contract, reference=reference)
    if html is not None:
        _write_html(html, report_html(report))
    if as_json:
        document = json.loads(report_json(report))
        if dataset is not None:
            document["dataset"] = admitted_as
        st.output.json(document)
    else:
        render_terminal(report, st.output.out)
        if admitted_as is not None:
            st.output.info(f"registered {admitted_as}, which passed contract {_contract_label(report)}")
        elif dataset is not None:
            st.output.info(f"data set '{dataset}' was not registered: the data failed its contract")
    if html is not None:
        st.output.info(f"HTML report: {html.resolve()}")
    if not report.passed:
        raise typer.Exit(1)


def _write_html(path: Path, page: str) -> None:
    # Written to a temporary name and moved into place: a reader never sees half a page.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InvalidInputError(
            f"cannot write the HTML report to {path} ({exc.strerror or exc}); pick another path"
        ) from None


def _contract_label(report: Any) -> str:
    version = getattr(report, "contract_version", None)
    return f"{report.contract_name}@{version}" if version is not None else str(report.contract_name)


# -- versions ------------------------------------------------------------------------------------


@app.command()
def versions(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A data set name.")],
    as_json: JsonOpt = False,
) -> None:
    """A data set's versions, newest first, with the contract version each passed (or failed).

    Example: lockgate data versions transactions
    """
    st = state(ctx)
    found = st.workspace().data.versions(name)
    if as_json:
        st.output.json([{**v.to_dict(), "contracts": [o.to_dict() for o in outcomes]} for v, outcomes in found])
        return
    rows = []
    for v, outcomes in found:
        latest: dict[str, Any] = {}
        for o in outcomes:  # the newest outcome per contract version
            latest[f"{o.contract}@{o.version}"] = o
        verdicts = [f"{key} passed" if o.passed else f"{key} FAILED ({o.errors} errors)" for key, o in latest.items()]
        rows.append(
            (short(v.content_hash, 12), v.num_rows, _when(v.created_at), v.created_by, "; ".join(verdicts) or "none")
        )
    st.output.print(table(f"data set {name}", ["version", "rows", "created (UTC)", "by", "contracts"], rows))


# -- contracts -----------------------------------------------------------------------------------


@contract_app.command("register")
def register(ctx: typer.Context, file: ContractFile, as_json: JsonOpt = False) -> None:
    """Register a contract as the next version of its name; refused, with every violation,
    when it breaks the compatibility mode or a consumer. Registering it again changes nothing.

    Example: lockgate data contract register contracts/transactions.yaml
    """
    st = state(ctx)
    contracts = st.workspace().data.contracts
    contract = Contract.load(file)
    before = _latest_version(contracts, contract.name)
    try:
        registered = contracts.register(contract)
    except IncompatibleContract as exc:
        mode = contracts.governing_mode(contract)
        if as_json:
            st.output.json(
                {
                    "registered": False,
                    "name": contract.name,
                    "compatibility": mode.value,
                    "violations": [v.to_dict() for v in exc.violations],
                }
            )
        else:
            _print_violations(st.output, f"contract '{contract.name}' was not registered", mode.value, exc.violations)
        raise typer.Exit(1) from None
    new = registered.version != before
    if as_json:
        st.output.json({"registered": new, **_meta(registered)})
        return
    if new:
        st.output.info(
            f"registered {registered.ref} (owner {registered.owner}, {registered.compatibility.value} compatibility)"
        )
    else:
        st.output.info(f"{registered.ref} is already registered with this content; nothing changed")


@contract_app.command("check")
def check(
    ctx: typer.Context,
    file: ContractFile,
    against_registered: Annotated[
        bool,
        typer.Option("--against-registered", help="Check compatibility with the registered versions of its name."),
    ] = False,
    mode: Annotated[
        str | None,
        typer.Option(
            help="backward, backward_transitive, forward, forward_transitive, full, full_transitive or none "
            "(default: the contract's mode, else the registered one's). Implies --against-registered."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a contract file: that it parses and, against the registered versions, that it is
    compatible. Exit 1 on any violation, 2 when the file is not a valid contract.

    Example: lockgate data contract check contracts/transactions.yaml --against-registered --mode backward
    """
    st = state(ctx)
    contract = Contract.load(file)
    chosen = parse_mode(mode) if mode is not None else None
    if not against_registered and chosen is None:
        if as_json:
            st.output.json({"name": contract.name, "valid": True, "columns": len(contract.columns)})
        else:
            st.output.info(f"contract {contract.name} is valid ({len(contract.columns)} columns)")
        return
    contracts = st.workspace().data.contracts
    applied = chosen or contracts.governing_mode(contract)
    violations = contracts.check(contract, applied)
    registered = _latest_version(contracts, contract.name)
    if as_json:
        st.output.json(
            {
                "name": contract.name,
                "valid": True,
                "compatibility": applied.value,
                "registered_latest": registered,
                "compatible": not violations,
                "violations": [v.to_dict() for v in violations],
            }
        )
    elif violations:
        _print_violations(st.output, f"contract '{contract.name}' is not compatible", applied.value, violations)
    elif registered is None:
        st.output.info(f"contract {contract.name} is valid; no version of it is registered yet, so nothing to break")
    else:
        st.output.info(
            f"contract {contract.name} is compatible with the registered versions under {applied.value} "
            f"(latest is v{registered})"
        )
    if violations:
        raise typer.Exit(1)


@contract_app.command("infer")
def infer(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="The data: a Parquet/CSV/Arrow file or folder, or s3://…")],
    name: Annotated[str | None, typer.Option(help="The contract's name (default: from the file name).")] = None,
) -> None:
    """Print a contract inferred from real data, as YAML: a starting point to edit.

    Example: lockgate data contract infer data/2026-11-28.parquet > contracts/new.yaml
    """
    from lockgate.data._infer import infer_contract
    from lockgate.data._sources import Source

    st = state(ctx)
    found = Source.parse(path).read()
    contract = infer_contract(found, name or _name_from(path))
    st.output.info(f"inferred from {found.num_rows} rows; review the rules before registering it")
    typer.echo(contract.to_yaml(), nl=False)


def _name_from(path: str) -> str:
    stem = Path(path.rstrip("/")).name.split(".", 1)[0]
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._-")
    return cleaned or "data"


@contract_app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NAME[@VERSION]", help="A registered contract, e.g. transactions@2.")],
    as_json: JsonOpt = False,
) -> None:
    """A registered contract (its latest version unless NAME@VERSION) and its version history.

    Example: lockgate data contract show transactions@2
    """
    st = state(ctx)
    contracts = st.workspace().data.contracts
    name, version = parse_contract_ref(ref)
    chosen = contracts.get(name, version)
    history = contracts.versions(name)
    if as_json:
        st.output.json({**chosen.to_dict(), "versions": [_meta(r) for r in history]})
        return
    c = chosen.contract
    st.output.print(
        escape(
            f"contract {chosen.ref}  owner {chosen.owner}  {chosen.compatibility.value} compatibility  "
            f"registered {_when(chosen.created_at)} UTC by {chosen.created_by}"
        )
    )
    if c.description:
        st.output.print(escape(c.description))
    rows = [
        (
            column,
            spec.type,
            "yes" if spec.nullable else "no",
            "" if spec.default is None else json.dumps(spec.default),
            _rules(spec.model_dump(exclude_none=True, exclude_defaults=True)),
        )
        for column, spec in c.columns.items()
    ]
    st.output.print(table("columns", ["column", "type", "nullable", "default", "rules"], rows))
    st.output.print(
        table(
            f"versions of {name}",
            ["version", "owner", "compatibility", "registered (UTC)", "by"],
            [(r.version, r.owner, r.compatibility.value, _when(r.created_at), r.created_by) for r in history],
        )
    )


def _rules(spec: dict[str, Any]) -> str:
    parts = []
    for key, value in spec.items():
        if key in ("type", "nullable", "default", "description"):
            continue
        if isinstance(value, dict) and "value" in value:
            shown = json.dumps(value["value"])
            parts.append(f"{key} {shown}" + (" (warn)" if value.get("severity") == "warn" else ""))
        else:
            parts.append(f"{key} {json.dumps(value)}")
    return ", ".join(parts)


@contract_app.command("list")
def list_contracts(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every registered contract with its latest version.

    Example: lockgate data contract list --json
    """
    st = state(ctx)
    found = st.workspace().data.contracts.list()
    if as_json:
        st.output.json([{**_meta(r), "versions": n} for r, n in found])
        return
    if not found:
        st.output.info("no contracts registered yet; register one: lockgate data contract register FILE")
        return
    rows = [(r.name, r.version, n, r.owner, r.compatibility.value, _when(r.created_at)) for r, n in found]
    columns = ["name", "latest", "versions", "owner", "compatibility", "latest registered (UTC)"]
    st.output.print(table("contracts", columns, rows))


# -- helpers -------------------------------------------------------------------------------------


def _meta(r: RegisteredContract) -> dict[str, Any]:
    return {k: v for k, v in r.to_dict().items() if k != "contract"}


def _latest_version(contracts: ContractRegistry, name: str) -> int | None:
    try:
        return int(contracts.get(name).version)
    except NotFoundError:
        return None


def _print_violations(output: Output, headline: str, mode: str, violations: list[Violation]) -> None:
    count = f"{len(violations)} violation" + ("s" if len(violations) != 1 else "")
    output.error(f"{headline}: {count} under {mode} compatibility")
    for v in violations:
        output.err.print(f"  - {v.message}", soft_wrap=True, markup=False, highlight=False)


def render_terminal(report: ValidationReport, console: Console) -> None:
    """Print the failures as a table and a one-line verdict.

    Values from the data are printed as plain text (never read as rich markup).
    """
    if report.failures:
        table = Table(show_edge=False, header_style="bold")
        for heading, justify in (
            ("check", "left"),
            ("column", "left"),
            ("severity", "left"),
            ("rows", "right"),
            ("share", "right"),
            ("examples", "left"),
        ):
            table.add_column(heading, justify=justify)  # type: ignore[arg-type]
        for f in report.failures:
            style = "red" if f.severity == "error" and not f.quarantined else "yellow"
            severity = f.severity + (" (quarantined)" if f.quarantined else "")
            table.add_row(
                Text(f.check),
                Text(f.column or "-"),
                Text(severity, style=style),
                Text(f"{f.rows:,}"),
                Text(share(f.share)),
                Text(", ".join(shown(v) for v in f.examples)),
            )
        console.print(table)
    for note in report.skipped:
        console.print(Text(f"skipped: {note}", style="dim"))
    console.print(Text(verdict(report), style="bold green" if report.passed else "bold red"))
