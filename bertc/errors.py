"""One exception type for everything a user can get wrong; the message carries the fix."""


class BertcError(Exception):
    """A user-facing error: bad input, unsupported model, missing tool, corrupt artifact."""


class DeviceUnavailable(BertcError):
    """A GPU artifact found no usable device: no libvulkan, no device, or a missing feature
    (BERTC_ERR_DEVICE). ``load(..., fallback="cpu")`` runs the artifact's CPU build instead."""
