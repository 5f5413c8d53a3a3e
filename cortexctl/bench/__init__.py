"""Load generation against a real hub: the one hub-process launcher (``launcher``), shared
by `cortexctl bench`, benchmarks/ and the integration tests; the scenarios of
`cortexctl bench` (``scenarios``), their load workers (``load``, each in its own process)
and the bare grpc.aio server they are compared with (``bare``). Nothing here runs inside
a hub."""
