"""Prints what TensorBoard's projector serves for a log folder, as JSON: the reader
eval/tests/projector.rs checks our projector files with.

    python3 read_projector.py LOG_DIR

Runs tensorboard's own ProjectorPlugin (PyPI: pip install tensorboard; 2.21.0 here) on LOG_DIR
and asks its HTTP routes, as the browser does, for every run's config, and for each embedding its
tensor, metadata and sprite. Exits 3 when tensorboard is missing.

{"runs": [...], "<run>": {"<tensor name>": {"shape": [n, d], "tensor": [[...]], "metadata": "...",
 "sprite": {"dims": [w, h], "png_base64": "..."} or null}}}
"""
import base64
import json
import sys

try:
    import numpy as np
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
    from werkzeug.test import Client
    from werkzeug.wrappers import Response
except ImportError:
    sys.exit(3)

logdir = sys.argv[1]
multiplexer = plugin_event_multiplexer.EventMultiplexer()
multiplexer.AddRunsFromDirectory(logdir)
multiplexer.Reload()
provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
plugin = ProjectorPlugin(base_plugin.TBContext(logdir=logdir, data_provider=provider, multiplexer=multiplexer))
routes = plugin.get_plugin_apps()


def get(route, **args):
    response = Client(routes[route], Response).get(route, query_string=args)
    if response.status_code != 200:
        sys.exit("%s %s: %s %s" % (route, args, response.status_code, response.get_data(as_text=True)))
    return response


if not plugin.is_active():
    # The activity check runs on a thread; its answer is what the config routes give anyway.
    plugin._update_configs()
runs = get("/runs").json
out = {"runs": runs}
for run in runs:
    config = get("/info", run=run).json
    out[run] = {}
    for e in config["embeddings"]:
        name = e["tensorName"]
        shape = [int(s) for s in e["tensorShape"]]
        tensor = np.frombuffer(get("/tensor", run=run, name=name).get_data(), dtype="float32").reshape(shape)
        sprite = None
        if e.get("sprite", {}).get("imagePath"):
            png = get("/sprite_image", run=run, name=name).get_data()
            sprite = {"dims": [int(d) for d in e["sprite"]["singleImageDim"]],
                      "png_base64": base64.b64encode(png).decode()}
        out[run][name] = {
            "shape": shape,
            "tensor": tensor.tolist(),
            "metadata": get("/metadata", run=run, name=name).get_data(as_text=True),
            "sprite": sprite,
        }
print(json.dumps(out))
