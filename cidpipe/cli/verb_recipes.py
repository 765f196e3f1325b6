"""`cidpipe recipes list|show|schema`: the bundled recipes and the recipe format."""

from __future__ import annotations

from typing import Annotated

import typer
import yaml
from rich.table import Table

from cidpipe.cli.common import JsonOpt, SetOpt, emit_json, recipe_from_cli, stdout
from cidpipe.config import bundled_recipes_dir, dump_recipe_yaml, recipe_json_schema

recipes_app = typer.Typer(
    help="List and show the bundled recipes, print the recipe JSON schema.", no_args_is_help=True
)


@recipes_app.command("list")
def list_recipes(json_: JsonOpt = False) -> None:
    """List the bundled recipes.  Example: cidpipe recipes list"""
    rows = []
    for path in sorted(bundled_recipes_dir().glob("*.yaml")):
        raw = yaml.safe_load(path.read_text()) or {}
        if isinstance(raw, dict) and "teacher" in raw:  # skip non-recipe YAML such as devices examples
            rows.append({"name": path.stem, "path": str(path), "description": raw.get("description", "")})
    if json_:
        emit_json(rows)
        return
    table = Table(title="bundled recipes")
    for column in ("name", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["description"])
    stdout.print(table)


@recipes_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="bundled recipe name or YAML path")],
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Print the fully resolved recipe (defaults filled in).  Example: cidpipe recipes show quickstart"""
    recipe = recipe_from_cli(name, set_)
    emit_json(recipe.display()) if json_ else stdout.out(dump_recipe_yaml(recipe), highlight=False)


@recipes_app.command("schema")
def schema(json_: JsonOpt = False) -> None:
    """Print the recipe's JSON schema.  Example: cidpipe recipes schema > recipe.schema.json"""
    if json_:  # the schema as the result of the JSON contract
        emit_json(recipe_json_schema())
        return
    from cidpipe.cli.json_contract import dumps

    stdout.out(dumps(recipe_json_schema()), highlight=False)  # the plain document, for > recipe.schema.json


def register(app: typer.Typer) -> None:
    app.add_typer(recipes_app, name="recipes")
