"""The Ray Serve application (see docs/serving.md): `config` (typed builder args), `schemas`
(request/response models), `handler` (what each endpoint does), `routes` (the FastAPI app),
`engine` + `model` (the checkpoint and its `@serve.batch` deployment), `client` (ingress -> model),
`app` (the builder `serve_app.app:build`), `loadgen` (client-side load and fault tools)."""
