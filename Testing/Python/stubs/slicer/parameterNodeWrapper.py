"""Test-only stand-in for Slicer's ``slicer.parameterNodeWrapper`` (absent from slicer-core).

Typed properties stored in a real ``vtkMRMLScriptedModuleNode``: plain values as parameters, MRML
nodes (and lists of nodes) as node references. Supports the types and validators PUMITSlicer uses:
``int``, ``float``, ``str``, ``bool``, ``enum.Enum``, ``vtkMRML*Node``, ``list[vtkMRML*Node]``,
``Annotated[..., WithinRange | Minimum | Maximum | Choice | Default]``. No GUI binding (needs Qt).

List parameters read back as :class:`ObservedList`, as in Slicer's real wrapper: in-place changes
(``append``, ``extend``, ``insert``, ``remove``, ``pop``, ``del``, item assignment, ``+=``, ``*=``)
are saved to the parameter node, assigning a new plain list replaces the value, and ``+`` / ``*``
raise ``NotImplementedError`` (the real wrapper's documented behaviour).
"""

import enum
import typing


class Default:
    def __init__(self, value):
        self.value = value


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"{value} is not within [{self.minimum}, {self.maximum}]")


class Minimum(WithinRange):
    def __init__(self, minimum):
        super().__init__(minimum, float("inf"))


class Maximum(WithinRange):
    def __init__(self, maximum):
        super().__init__(float("-inf"), maximum)


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)

    def validate(self, value):
        if value not in self.choices:
            raise ValueError(f"{value!r} is not one of {self.choices}")


class ObservedList:
    """A list parameter's value: a plain list copy that writes itself back on every in-place change."""

    def __init__(self, parameter, parameterNode, items):
        self._parameter, self._parameterNode, self._list = parameter, parameterNode, list(items)

    def _save(self):
        self._parameter.write(self._parameterNode, self._list)

    def __repr__(self):
        return f"ObservedList({self._list!r})"

    def __eq__(self, other):
        return self._list == (other._list if isinstance(other, ObservedList) else other)

    def __len__(self):
        return len(self._list)

    def __iter__(self):
        return iter(self._list)

    def __contains__(self, item):
        return item in self._list

    def __getitem__(self, index):
        return self._list[index]

    def __setitem__(self, index, item):
        self._list[index] = item
        self._save()

    def __delitem__(self, index):
        del self._list[index]
        self._save()

    def __iadd__(self, other):
        self._list += other
        self._save()
        return self

    def __imul__(self, other):
        self._list *= other
        self._save()
        return self

    def __add__(self, other):
        raise NotImplementedError("Adding an ObservedList is not supported. However, += is supported.")

    __radd__ = __add__

    def __mul__(self, other):
        raise NotImplementedError("Multiplying an ObservedList is not supported. However, *= is supported.")

    __rmul__ = __mul__

    def append(self, item):
        self._list.append(item)
        self._save()

    def extend(self, items):
        self._list.extend(items)
        self._save()

    def insert(self, index, item):
        self._list.insert(index, item)
        self._save()

    def remove(self, item):
        self._list.remove(item)
        self._save()

    def pop(self, index=-1):
        item = self._list.pop(index)
        self._save()
        return item

    def clear(self):
        self._list.clear()
        self._save()

    def index(self, *args):
        return self._list.index(*args)

    def count(self, item):
        return self._list.count(item)


def _isNodeType(t):
    import slicer

    return isinstance(t, type) and issubclass(t, slicer.vtkMRMLNode)


class _Parameter:
    def __init__(self, name, hint, classDefault):
        self.name = name
        self.type, self.validators = hint, []
        if typing.get_origin(hint) is typing.Annotated:
            self.type, *extras = typing.get_args(hint)
            self.validators = [e for e in extras if hasattr(e, "validate")]
            classDefault = next((e.value for e in extras if isinstance(e, Default)), classDefault)
        self.isList = typing.get_origin(self.type) is list
        self.itemType = typing.get_args(self.type)[0] if self.isList else self.type
        if classDefault is not _UNSET:
            self.default = classDefault
        elif self.isList:
            self.default = []
        elif isinstance(self.type, type) and issubclass(self.type, enum.Enum):
            self.default = next(iter(self.type))
        elif _isNodeType(self.type):
            self.default = None
        else:
            self.default = self.type()

    def read(self, node):
        if self.isList:
            items = [node.GetNthNodeReference(self.name, i) for i in range(node.GetNumberOfNodeReferences(self.name))]
            return ObservedList(self, node, items)
        if _isNodeType(self.type):
            return node.GetNodeReference(self.name)
        text = node.GetParameter(self.name)
        if self.type is bool:
            return text == "true"
        if issubclass(self.type, enum.Enum):
            return self.type[text]
        return self.type(text)

    def write(self, node, value):
        for validator in self.validators:
            validator.validate(value)
        if self.isList:
            ids = [self._checkedNode(item).GetID() for item in value]  # a plain list or an ObservedList
            node.RemoveNodeReferenceIDs(self.name)
            for nodeId in ids:
                node.AddNodeReferenceID(self.name, nodeId)
        elif _isNodeType(self.type):
            node.SetNodeReferenceID(self.name, self._checkedNode(value).GetID() if value is not None else None)
        elif self.type is bool:
            node.SetParameter(self.name, "true" if value else "false")
        elif isinstance(value, enum.Enum):
            node.SetParameter(self.name, value.name)
        else:
            node.SetParameter(self.name, str(self.type(value)))

    def _checkedNode(self, value):
        if not value.IsA(self.itemType.__name__):
            raise TypeError(f"{self.name}: expected {self.itemType.__name__}, got {value.GetClassName()}")
        return value


_UNSET = object()


def parameterNodeWrapper(cls):
    parameters = {
        name: _Parameter(name, hint, cls.__dict__.get(name, _UNSET))
        for name, hint in typing.get_type_hints(cls, include_extras=True).items()
    }

    def __init__(self, parameterNode):
        self.parameterNode = parameterNode
        for p in parameters.values():
            unset = not parameterNode.GetParameter(p.name) and parameterNode.GetNumberOfNodeReferences(p.name) == 0
            if unset and not (p.isList or _isNodeType(p.type)):
                p.write(parameterNode, p.default)

    def makeProperty(p):
        return property(lambda self: p.read(self.parameterNode), lambda self, v: p.write(self.parameterNode, v))

    for name, p in parameters.items():
        setattr(cls, name, makeProperty(p))
    cls.__init__ = __init__
    cls.allParameters = parameters
    return cls
