"""bertc: compile BERT-family models into small C artifacts for phones.

    import bertc
    art = bertc.compile("path/to/model", target="host", seq_len=128, out="model.bertc")
    model = bertc.load("model.bertc", threads=2)
    outputs = model(input_ids, attention_mask)   # dict of numpy arrays
"""

__version__ = "0.1.0"

from .errors import BertcError


def compile(*args, calibrate=None, **kwargs):
    """bertc.api.compile; ``calibrate="task:NAME"`` (--dtype int8) is read here, from search/tasks.py."""
    from .api import compile as _compile

    if isinstance(calibrate, str) and calibrate.startswith("task:"):
        from .search.tasks import calibration_texts

        calibrate = calibration_texts(calibrate.removeprefix("task:"))
    return _compile(*args, calibrate=calibrate, **kwargs)


def load(*args, **kwargs):
    from .api import load as _load

    return _load(*args, **kwargs)


__all__ = ["BertcError", "__version__", "compile", "load"]
