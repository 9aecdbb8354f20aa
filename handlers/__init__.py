"""Switchyard's cloud-agnostic application: the order system and the core it runs on.

`handlers.core` is the framework (events, bindings, ports, the processing engine, saga
runner); the modules beside it are the order system. Nothing here imports a cloud SDK,
Pulumi or the CloudEvents SDK: adapters translate at the edges.
"""
