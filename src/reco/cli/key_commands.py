"""`reco keys`: create, list and revoke the service's API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reco.cli.common import console, open_settings_store
from reco.service.keys import Role, create_key, list_keys, revoke_key

app = typer.Typer(help="Manage the API keys the service accepts.", no_args_is_help=True)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


@app.command()
def create(
    name: Annotated[str, typer.Option("--name", help="Who or what uses the key.")],
    role: Annotated[
        Role, typer.Option("--role", help="read < write < admin; each includes the ones before.")
    ] = Role.READ,
) -> None:
    """Create a key and print its secret, once: only its hash is stored."""
    _settings, engine = open_settings_store()
    record, secret = create_key(engine, name, role)
    console.print(
        f"created key {record.key_id} ({escape(record.name)}, role {record.role})",
        highlight=False,
    )
    # Printed bare (no markup, no wrapping) so it can be copied or piped as is.
    console.print(secret, markup=False, highlight=False, soft_wrap=True)
    console.print(
        "[yellow]Store this secret now: it is not kept and cannot be shown again.[/] "
        "Send it as 'Authorization: Bearer <secret>' or 'X-API-Key: <secret>'."
    )


@app.command("list")
def list_command() -> None:
    """Every key: id, name, role, when it was created and revoked (never its secret)."""
    _settings, engine = open_settings_store()
    keys = list_keys(engine)
    if not keys:
        console.print("no API keys yet; create one with `reco keys create --name NAME`")
        return
    table = Table("id", "name", "role", "created", "revoked")
    for key in keys:
        table.add_row(
            key.key_id,
            escape(key.name),
            key.role.value,
            _when(key.created_at),
            _when(key.revoked_at),
        )
    console.print(table)


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="Id of the key (see `reco keys list`).")],
) -> None:
    """Revoke a key: requests made with it are refused from now on."""
    _settings, engine = open_settings_store()
    if not revoke_key(engine, key_id):
        Console(stderr=True).print(
            f"[bold red]error:[/] no API key has id {escape(repr(key_id))}; "
            "`reco keys list` shows the ids.",
            highlight=False,
        )
        raise typer.Exit(code=1)
    console.print(f"revoked key {key_id}")
