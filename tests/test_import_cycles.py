"""No import cycles anywhere in the package (DESIGN.md: the arrows point down only).

Every import counts, including those inside functions: a lazy import only moves the moment the
two modules meet, they still cannot be understood, tested or loaded one without the other. Only
``if TYPE_CHECKING:`` imports (annotations, never executed) are left out."""

import grimp


def import_cycles(graph) -> list[list[str]]:
    """The strongly connected groups of more than one module in a grimp import graph (Tarjan),
    each sorted; a module importing itself is not reported."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def visit(root: str) -> None:  # iterative Tarjan: deep chains must not hit the recursion limit
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        group.append(m)
                        if m == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return sorted(groups)


def test_the_finder_reports_direct_lazy_and_long_cycles():
    g = grimp.ImportGraph()
    for m in ("p.a", "p.b", "p.c", "p.d", "p.e"):
        g.add_module(m)
    g.add_import(importer="p.a", imported="p.b")
    g.add_import(importer="p.b", imported="p.a")  # two-file cycle
    g.add_import(importer="p.c", imported="p.d")
    g.add_import(importer="p.d", imported="p.e")
    assert import_cycles(g) == [["p.a", "p.b"]]
    g.add_import(importer="p.e", imported="p.c")  # three-file cycle
    assert import_cycles(g) == [["p.a", "p.b"], ["p.c", "p.d", "p.e"]]


def test_grimp_sees_imports_inside_functions(tmp_path, monkeypatch):
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyclepkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from cyclepkg import a\n    return a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("cyclepkg", exclude_type_checking_imports=True, cache_dir=None)
    assert import_cycles(graph) == [["cyclepkg.a", "cyclepkg.b"]]


def test_diffstudio_has_no_import_cycles():
    graph = grimp.build_graph("diffstudio", exclude_type_checking_imports=True, cache_dir=None)
    cycles = import_cycles(graph)
    assert cycles == [], "import cycles (lazy imports count): " + "; ".join(" <-> ".join(c) for c in cycles)
