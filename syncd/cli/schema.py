"""`syncd schema ENV`: the entity graph as syncd sees it."""
from __future__ import annotations

import json
from typing import Any

import anyio
import click

from .. import adapters
from .. import operations as ops
from .. import render
from ..render import out
from .app import cli, config_of


@cli.command()
@click.argument("env")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def schema(ctx: click.Context, env: str, as_json: bool) -> None:
    """Keys, references, children, natural keys and dependency order of ENV."""
    config = config_of(ctx)

    async def load() -> Any:
        store = adapters.open_store(config, env, readonly=True)
        try:
            return await adapters.load_schema(config, store)
        finally:
            await store.close()

    graph = anyio.run(load)
    entities = [{"entity": e.name, "key": e.key, "natural_key": list(e.natural_key),
                 "references": [{"field": str(r.field), "target": r.target, "origin": r.origin}
                                for r in e.references],
                 "children": list(e.children), "blob_fields": [str(f) for f in e.blob_fields]}
                for e in (graph.entity(n) for n in graph.order)]
    if as_json:
        print(json.dumps({"environment": env, "order": list(graph.order), "entities": entities}))
        return
    out.print(render.simple_table(f"Schema of {env} (dependency order)", [
        "Entity", "Key", "References", "Children", "Natural key", "Blob fields"], [
        (e["entity"], e["key"], ", ".join(f"{r['field']} → {r['target']}" for r in e["references"]),
         ", ".join(e["children"]), ", ".join(e["natural_key"]), ", ".join(e["blob_fields"]))
        for e in entities]))
