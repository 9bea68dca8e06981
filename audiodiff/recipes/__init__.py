"""The shipped recipes, as package data: `<name>.toml`, found by name.

`audiodiff train kathleen` reads `kathleen.toml` from here (see
`audiodiff.recipe.resolve_recipe`); `audiodiff recipes` lists them. Each file starts
with two comment lines: what it trains, and `# time:` its rough training time on a
CPU and on one GPU.
"""
