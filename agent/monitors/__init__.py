"""Monitors: the Stellantis ``MonitorParameter`` model and the engine that evaluates it.

Pure: no clock reads, no I/O (``loading`` reads monitors files for the commands). Data flows
one way: JSON -> ``model.parse_monitor`` (frozen ``Monitor``) -> ``engine.Engine`` (trigger
states, three-valued expression) -> ``agent.model.Event``.

Modules: ``model`` (objects, ``parse_monitor``, ``monitor_hash``), ``definition`` (building a
monitor from JSON), ``delivery`` (subscribeParam), ``fields`` (JSON access with paths),
``names`` (the Stellantis data-name table), ``expr`` (boolExp), ``zone``/``geo`` (places),
``schedule`` (time windows), ``data`` (data triggers, operators), ``conditions``/``triggers``
(trigger states), ``index`` (which triggers a change can affect), ``runtime``, ``engine``,
``memory`` (fired store, sequence, ids), ``extensions`` (event values and snapshots),
``signals`` (GPS-derived names, "in use"), ``loading`` (monitors files), ``limits`` (bounds checked
before a definition is read: size, nesting, numbers, Unicode, triggers, boolExp, polygons).

Errors: invalid definitions never raise; ``parse_monitor`` returns every problem
(``agent.errors.Problem``). ``expr.ExprError`` (a ValueError) stays inside the package;
``loading`` and ``limits.load_monitor_json`` raise ``agent.errors.MonitorError`` for JSON that is
not valid or passes a bound.
"""
