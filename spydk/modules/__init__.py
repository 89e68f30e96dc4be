"""Pluggable modules, one package each: ``spydk/modules/<kind>/<name>/``.

Layers (spydk.bdev, spydk.nvmf, ...) define the interfaces; modules implement them and
register themselves when imported. No layer imports a module: the plugin loader
(spydk.apps.plugins, via spydk.rpc.discovery) imports every package found here.
"""
