-- wrk body for one short sentence to the default model:
--   wrk -t2 -c64 -d20s --latency -s bench/embed_one.lua http://127.0.0.1:8000/models/minilm
wrk.method = "POST"
wrk.body = '{"inputs": "The quick brown fox jumps over the lazy dog."}'
wrk.headers["Content-Type"] = "application/json"
