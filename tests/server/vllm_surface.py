"""A static scan (ast, no imports) of where the project's code touches vLLM, torch or xgrammar
internals: what `server.vllm_patches` must list (tests/server/test_vllm_patches.py).

Names are resolved through the module's imports, simple assignments (`cls = xgrammar.X`),
annotated parameters and variables (`vllm_config: VllmConfig`, `cls: type[X]`), calls (`f()` of
a resolved `f` is written `f()`; a function of the same module stands for its return
annotation) and `type(x)` (written `type(x)`), scope by scope. What it reports, as
`Finding(file, name, kind)`:

- `private`: a private name of vllm/torch/xgrammar read, called or imported
  (`vllm.lora.layers.utils._get_lora_device`, `torch._dynamo....X`); an underscore attribute of
  an object it cannot resolve, when no module of the project defines that name, as `?._name`
  (`w._version` on a tensor parameter it cannot type).
- `assigned`: an attribute assigned (or `setattr` with a constant name) on a resolved vLLM,
  torch or xgrammar object, public or private (`vllm.v1.engine.utils.get_mp_context`).
- `setattr`: a `setattr` whose target or name it cannot resolve, as `setattr(?)`.
- `subclass`: a class deriving from a vLLM or xgrammar class (`subclass:vllm....PunicaWrapperCPU`),
  or from a private torch one.
- `inherited-private`: in such a subclass, `self._x` read where the class itself never defines
  or assigns `_x` (`vllm....KVConnectorBase_V1._kv_transfer_config`).
- `class-private`: in such a subclass, a private name defined in the class body; the test keeps
  it only if the base class has that attribute (an override of theirs, not a helper of ours).
- `env`: a string constant naming an environment variable of vLLM, torch, oneDNN or OpenMP
  (`env:ONEDNN_PRIMITIVE_CACHE_CAPACITY`), wherever it is used.
- `module`: a string constant naming a vllm/torch/xgrammar module (`module:vllm.v1.engine.core`).

Blind spots: objects reached through containers, call results of unresolved functions and
unannotated parameters (their public attributes are not seen; their private ones only as `?._x`);
names built at run time (`getattr(x, name)`, computed `setattr` names: reported as `setattr(?)`
without what they set); public internals read (`Request.prompt_embeds`) or behaviour mirrored
without touching a symbol (vLLM's LD_PRELOAD rule): those are listed in the inventory by hand.
Docstrings and comments are not scanned.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

TRACKED = ("vllm", "torch", "xgrammar")
SUBCLASS_TRACKED = ("vllm", "xgrammar")  # subclassing torch's public classes is ordinary use
ENV_NAME = re.compile(r"^(?:(?:VLLM|ONEDNN|DNNL|MKLDNN|OMP|KMP|GOMP|MKL|TORCH|TORCHINDUCTOR|PYTORCH"
                      r"|XGRAMMAR)_[A-Z0-9_]+|LD_PRELOAD"
                      r"|LRU_CACHE_CAPACITY)$")  # torch's ideep cache, unprefixed
MODULE_NAME = re.compile(r"^(?:vllm|torch|xgrammar)(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")


@dataclass(frozen=True, order=True)
class Finding:
    file: str
    name: str
    kind: str


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _root(qualified: str) -> str:
    return re.split(r"[.(]", qualified.removeprefix("type("), maxsplit=1)[0]


def _tracked(qualified: str | None, roots=TRACKED) -> bool:
    return qualified is not None and _root(qualified) in roots


def defined_names(trees: list[ast.AST]) -> set[str]:
    """Every name the project defines or assigns anywhere (functions, classes, variables,
    attributes, parameters): an `x._name` of one of these is the project's own."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == "setattr" and len(node.args) >= 2 \
                    and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                names.add(node.args[1].value)
    return names


class _Scanner(ast.NodeVisitor):
    def __init__(self, file: str, project_names: set[str], tree: ast.Module) -> None:
        self.file = file
        self.project_names = project_names
        # Module-level NAME = "string", and the return annotations of module-level functions.
        self.constants = {target.id: node.value.value for node in tree.body
                          if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                          and isinstance(node.value.value, str)
                          for target in node.targets if isinstance(target, ast.Name)}
        self.returns = {node.name: node.returns for node in tree.body
                        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None}
        self.scopes: list[dict[str, str]] = [{}]
        self.classes: list[tuple[str, set[str]] | None] = []  # (tracked base, names the class defines)
        self.findings: set[Finding] = set()

    # -- resolution ------------------------------------------------------------------------
    def lookup(self, name: str) -> str | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name] or None  # "": bound here to something unresolved
        return None

    def resolve(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.lookup(node.id)
        if isinstance(node, ast.Attribute):
            owner = self.resolve(node.value)
            return None if owner is None else f"{owner}.{node.attr}"
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "type" and len(node.args) == 1:
                inner = self.resolve(node.args[0])
                return None if inner is None else f"type({inner})"
            func = self.resolve(node.func)
            if func is None and isinstance(node.func, ast.Name) and node.func.id in self.returns:
                return self.resolve(self.returns[node.func.id])  # a function of this module
            return None if func is None else f"{func}()"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
            try:
                return self.resolve(ast.parse(node.value, mode="eval").body)
            except SyntaxError:
                return None
        if isinstance(node, ast.Subscript):  # `type[X]` (an annotation): the class X; `list[X]`: no X
            if isinstance(node.value, ast.Name) and node.value.id == "type":
                return self.resolve(node.slice)
            return None
        return None

    def bind(self, name: str, qualified: str | None) -> None:
        self.scopes[-1][name] = qualified or ""  # "" shadows an outer binding

    def report(self, name: str, kind: str) -> None:
        self.findings.add(Finding(self.file, name, kind))

    # -- imports ---------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.bind(alias.asname, alias.name)
            else:
                root = alias.name.split(".")[0]
                self.bind(root, root)
            if _tracked(alias.name) and any(_private(part) for part in alias.name.split(".")[1:]):
                self.report(alias.name, "private")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or node.module is None:
            return
        for alias in node.names:
            qualified = f"{node.module}.{alias.name}"
            self.bind(alias.asname or alias.name, qualified)
            if _tracked(qualified) and any(_private(part) for part in qualified.split(".")[1:]):
                self.report(qualified, "private")

    # -- scopes ----------------------------------------------------------------------------
    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.visit(node.args)
        if node.returns is not None:
            self.visit(node.returns)
        self.scopes.append({})
        args = node.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs,
                    *filter(None, [args.vararg, args.kwarg])]:
            self.bind(arg.arg, self.resolve(arg.annotation) if arg.annotation is not None else None)
        for statement in node.body:
            self.visit(statement)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node: ast.Lambda) -> None:
        args = node.args
        self.scopes.append({arg.arg: "" for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs,
                                                     *filter(None, [args.vararg, args.kwarg])]})
        self.visit(node.body)
        self.scopes.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        tracked_base = None
        for base in node.bases:
            self.visit(base)
            qualified = self.resolve(base)
            if _tracked(qualified, SUBCLASS_TRACKED) or (
                    _tracked(qualified, ("torch",)) and any(_private(p) for p in qualified.split(".")[1:])):
                self.report(f"subclass:{qualified}", "subclass")
                tracked_base = tracked_base or qualified
        own: set[str] = set()
        if tracked_base is not None:
            for item in ast.walk(node):
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item in node.body:
                    own.add(item.name)
                elif isinstance(item, ast.Attribute) and isinstance(item.ctx, ast.Store) \
                        and isinstance(item.value, ast.Name) and item.value.id == "self":
                    own.add(item.attr)
            for item in node.body:
                targets = item.targets if isinstance(item, ast.Assign) else \
                    [item.target] if isinstance(item, ast.AnnAssign) else []
                for target in targets:
                    if isinstance(target, ast.Name):
                        own.add(target.id)
                        if _private(target.id):
                            self.report(f"{tracked_base}.{target.id}", "class-private")
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _private(item.name):
                    self.report(f"{tracked_base}.{item.name}", "class-private")
        self.classes.append((tracked_base, own) if tracked_base is not None else None)
        self.scopes.append({})
        for statement in node.body:
            self.visit(statement)
        self.scopes.pop()
        self.classes.pop()
        self.bind(node.name, None)

    # -- bindings and assignments ----------------------------------------------------------
    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        value = self.resolve(node.value)
        for target in node.targets:
            self._store(target, value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.annotation)
        self._store(node.target, self.resolve(node.annotation) or
                    (self.resolve(node.value) if node.value is not None else None))

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        self._store(node.target, None, rebind=False)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self._store(node.target, self.resolve(node.value))

    def _store(self, target: ast.AST, value: str | None, rebind: bool = True) -> None:
        if isinstance(target, ast.Name):
            if rebind:
                self.bind(target.id, value)
        elif isinstance(target, ast.Attribute):
            owner = self.resolve(target.value)
            if _tracked(owner):
                self.report(f"{owner}.{target.attr}", "assigned")
            else:
                self.visit(target.value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._store(element, None, rebind)
        else:
            self.visit(target)

    def visit_For(self, node: ast.For) -> None:
        self.visit(node.iter)
        self._store(node.target, None)
        for statement in [*node.body, *node.orelse]:
            self.visit(statement)

    visit_AsyncFor = visit_For

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self.visit(node.iter)
        self._store(node.target, None)
        for condition in node.ifs:
            self.visit(condition)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._store(item.optional_vars, None)
        for statement in node.body:
            self.visit(statement)

    visit_AsyncWith = visit_With

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.bind(node.name, None)
        for statement in node.body:
            self.visit(statement)

    # -- reads -----------------------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.visit(node.value)
        if not _private(node.attr):
            return
        owner = self.resolve(node.value)
        if owner is None and isinstance(node.value, ast.Name) and node.value.id == "self":
            context = self.classes[-1] if self.classes else None
            if context is not None and node.attr not in context[1]:
                self.report(f"{context[0]}.{node.attr}", "inherited-private")
            return
        if owner is not None:
            if _tracked(owner):
                self.report(f"{owner}.{node.attr}", "private")
        elif node.attr not in self.project_names:
            self.report(f"?.{node.attr}", "private")

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") and len(node.args) >= 2:
            owner = self.resolve(node.args[0])
            name = node.args[1]
            attr = name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else \
                self.constants.get(name.id) if isinstance(name, ast.Name) else None
            if owner is None and isinstance(node.args[0], ast.Name) and node.args[0].id == "self":
                return
            if owner is not None and attr is not None:
                if _tracked(owner):
                    self.report(f"{owner}.{attr}", "assigned")
            elif owner is None or attr is None:
                self.report("setattr(?)", "setattr")

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            if ENV_NAME.match(node.value):
                self.report(f"env:{node.value}", "env")
            elif MODULE_NAME.match(node.value):
                self.report(f"module:{node.value}", "module")

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # a docstring
        self.visit(node.value)


def scan(root: Path, packages: list[str]) -> list[Finding]:
    """Every finding in the .py files of `packages` (directories under `root`)."""
    files = sorted(path for package in packages for path in (root / package).rglob("*.py"))
    trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in files}
    project = defined_names(list(trees.values()))
    findings: set[Finding] = set()
    for path, tree in trees.items():
        scanner = _Scanner(path.relative_to(root).as_posix(), project, tree)
        scanner.visit(tree)
        findings |= scanner.findings
    return sorted(findings)
