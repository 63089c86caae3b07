"""Where a real dataset's fields are: the config's ``data`` block resolved against a preset.

An explicit config value wins over the preset (``data.preset``: ``yfcc15m``, ``redcaps``,
``datacomp``), which wins over the defaults (``url``, ``caption``, a ``timestamp`` column
read with ``unit: auto``, the url as sample id).
"""
from __future__ import annotations

from ticlip_core.data.metadata import PRESETS

DEFAULT_COLUMNS = {"url": "url", "caption": "caption", "id": None}
DEFAULT_TIMESTAMP = {"column": "timestamp", "unit": "auto", "key_to_year": None}


def metadata_spec(data_cfg: dict) -> dict:
    """``{"columns": {url, caption, id}, "timestamp": {column, unit, key_to_year}}`` for ``data_cfg``."""
    preset_name = data_cfg.get("preset")
    if preset_name is not None and preset_name not in PRESETS:
        raise ValueError(f"data.preset: unknown preset '{preset_name}'; known: {', '.join(PRESETS)}")
    preset = PRESETS.get(preset_name, {})
    from_preset_cols = {k: preset[k] for k in ("url", "caption", "id") if k in preset}
    from_preset_ts = {}
    if "timestamp_column" in preset:
        from_preset_ts["column"] = preset["timestamp_column"]
    if "timestamp_unit" in preset:
        from_preset_ts["unit"] = preset["timestamp_unit"]

    def pick(defaults, from_preset, given):
        out = dict(defaults)
        out.update(from_preset)
        out.update({k: v for k, v in (given or {}).items() if v is not None})
        return out

    columns = pick(DEFAULT_COLUMNS, from_preset_cols, data_cfg.get("columns"))
    timestamp = pick(DEFAULT_TIMESTAMP, from_preset_ts, data_cfg.get("timestamp"))
    if timestamp["key_to_year"] is not None:
        if columns["id"] is None:
            raise ValueError("data.timestamp.key_to_year needs data.columns.id: the column matched "
                             "against the mapping (DataComp: uid)")
        timestamp["column"] = None
    elif timestamp["column"] is None:
        raise ValueError(f"data: no timestamp source; preset '{preset_name}' gives years by key, so set "
                         "data.timestamp.key_to_year (TiC-DataComp: the folder of per-year uid .npy files)")
    return {"columns": columns, "timestamp": timestamp}
