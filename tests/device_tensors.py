"""Device memory without a GPU: tensors the host may read only by copying them back, as on CUDA.

Under `DeviceMoves`, every tensor that code moves with `.to(device)` becomes a `DeviceTensor`, and so does every
result computed from one (tensors created with `device=` stay plain: on a CPU run that device is the host too).
Reading a DeviceTensor as an array (`.numpy()`, `np.asarray(t)`) raises the TypeError CUDA raises; `.cpu()`
copies it back to a plain tensor. Parameters keep their type (a module's weights are not what a batch path
reads back). So a CPU run of a command under `DeviceMoves` fails where a CUDA run would crash on a host read of
device memory.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

T = torch.Tensor
_MESSAGE = "can't convert device tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory first."


class DeviceTensor(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (T.numpy, T.__array__):
            raise TypeError(_MESSAGE)
        if func is T.cpu:
            return args[0].as_subclass(torch.Tensor).clone()
        return super().__torch_function__(func, types, args, kwargs or {})

    def __deepcopy__(self, memo):  # a copied module's buffers stay on its device
        return self.as_subclass(torch.Tensor).__deepcopy__(memo).as_subclass(DeviceTensor)


class DeviceMoves(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        moved = func is T.to and torch._C._nn._parse_to(*args[1:], **kwargs)[0] is not None
        if moved and not isinstance(out, (DeviceTensor, torch.nn.Parameter)):
            return out.as_subclass(DeviceTensor)
        return out
