"""``agentdb init | store | search | get | delete | stats | import | export``: one store."""

from __future__ import annotations

import typer
from rich.table import Table

from ..errors import describe
from ..memory.jsonl import export_jsonl, import_jsonl
from .common import DB_OPT as db_opt
from .common import JSON_OPT as json_opt
from .common import emit, fail, kind_of, open_db, out, parse_json


def register(app: typer.Typer) -> None:
    """Add these commands to ``app`` (called by :func:`agentdb.cli._build_app`)."""
    @app.command()
    def init(db: str = db_opt,
             dim: int = typer.Option(None, help="Embedding dimension (default: the "
                                                "embedder's, else 384)."),
             embedder: str = typer.Option(
                 None, "--embedder",
                 help="hashing (default; lexical), minilm / minilm-int8 (all-MiniLM-L6-v2 on "
                      "onnxruntime: the 'embed' extra), onnx:<model dir>. The store "
                      "remembers it."),
             as_json: bool = json_opt) -> None:
        """Create an empty store (or check an existing one)."""
        with open_db(db, dim=dim, embedder=embedder) as d:
            emit({"db": db, "dim": d.dim, "embedder": d.stats()["embedder"],
                  "patterns": d.count()}, as_json)

    @app.command()
    def store(text: str = typer.Argument(..., help="Task (pattern/episode) or skill name."),
              db: str = db_opt,
              kind: str = typer.Option("pattern", help="pattern, episode or skill."),
              reward: float = typer.Option(0.0, help="Reward in [-1, 1]."),
              success: bool = typer.Option(False, "--success/--failure"),
              session: str = typer.Option(None, help="Session id."),
              critique: str = typer.Option(None), input: str = typer.Option(None),
              output: str = typer.Option(None),
              description: str = typer.Option("", help="Skill description."),
              metadata: str = typer.Option(None, help="JSON object."),
              ttl: float = typer.Option(None, help="Seconds until it expires."),
              dedupe: float = typer.Option(
                  None, help="Patterns: fold into a stored one at least this similar."),
              namespace: str = typer.Option(None, help="The store's namespace to write in."),
              as_json: bool = json_opt) -> None:
        """Store one record; prints its id."""
        meta = parse_json(metadata, "--metadata")
        with open_db(db) as root:
            try:
                d = root if namespace is None else root.namespace(namespace)
                k = kind_of(kind)
                if dedupe is not None and k != "patterns":
                    raise ValueError("--dedupe applies to patterns")
                if k == "skills":
                    rid = d.store_skill(text, description, metadata=meta, ttl=ttl)
                elif k == "episodes":
                    rid = d.store_episode(text, reward=reward, success=success,
                                          session_id=session, critique=critique, input=input,
                                          output=output, metadata=meta, ttl=ttl)
                else:
                    rid = d.store_pattern(text, reward=reward, success=success,
                                          session_id=session, critique=critique, input=input,
                                          output=output, metadata=meta, ttl=ttl,
                                          dedupe=dedupe)
            except (ValueError, TypeError, KeyError) as exc:
                fail(str(exc))
            emit({"id": rid, "kind": kind} if as_json else f"stored {kind} {rid}", as_json)

    @app.command()
    def search(query: str, db: str = db_opt, k: int = typer.Option(5, "-k", "--k"),
               kind: str = typer.Option("pattern"),
               min_reward: float = typer.Option(None, "--min-reward"),
               success_only: bool = typer.Option(False, "--success-only"),
               session: str = typer.Option(None),
               where: str = typer.Option(None, help='Metadata filter as JSON, e.g. '
                                                    '\'{"lang": "py"}\'.'),
               threshold: float = typer.Option(None, help="Minimum cosine similarity."),
               as_json: bool = json_opt) -> None:
        """Search by text."""
        flt = parse_json(where, "--where")
        with open_db(db, readonly=True) as d:
            try:
                k_ = kind_of(kind)
                if k_ == "patterns":
                    hits = d.search_patterns(query, k=k, min_reward=min_reward,
                                             success_only=success_only, session_id=session,
                                             where=flt, threshold=threshold)
                elif k_ == "episodes":
                    hits = d.search_episodes(query, k=k, min_reward=min_reward,
                                             success=True if success_only else None,
                                             session_id=session, where=flt,
                                             threshold=threshold)
                else:
                    hits = d.search_skills(query, k=k, where=flt, threshold=threshold)
            except (ValueError, TypeError, KeyError) as exc:
                fail(str(exc))
            if as_json:
                emit([h.to_dict() for h in hits], True)
                return
            table = Table("id", "similarity", "text", "reward", "success")
            for h in hits:
                r = h.record
                table.add_row(str(h.id), f"{h.similarity:.3f}", getattr(r, "task", None)
                              or getattr(r, "name", ""), str(getattr(r, "reward", "")),
                              str(getattr(r, "success", "")))
            out.print(table)

    @app.command()
    def get(id: int, db: str = db_opt, kind: str = typer.Option("pattern"),
            as_json: bool = json_opt) -> None:
        """Print one record."""
        with open_db(db, readonly=True) as d:
            k = kind_of(kind)
            try:
                rec = {"patterns": d.get_pattern, "episodes": d.get_episode,
                       "skills": d.get_skill}[k](id)
            except KeyError as exc:
                fail(describe(exc).message)
            emit(rec.to_dict(), as_json)

    @app.command()
    def delete(id: int, db: str = db_opt, kind: str = typer.Option("pattern"),
               as_json: bool = json_opt) -> None:
        """Delete one record."""
        with open_db(db) as d:
            k = kind_of(kind)
            try:
                {"patterns": d.delete_pattern, "episodes": d.delete_episode,
                 "skills": d.delete_skill}[k](id)
            except KeyError as exc:
                fail(describe(exc).message)
            emit({"deleted": id, "kind": kind} if as_json else f"deleted {kind} {id}", as_json)

    @app.command()
    def stats(db: str = db_opt, as_json: bool = json_opt) -> None:
        """Counts and sizes."""
        with open_db(db, readonly=True) as d:
            emit(d.stats(), as_json)

    @app.command("import")
    def import_(path: str, db: str = db_opt,
                keep_ids: bool = typer.Option(False, "--keep-ids"),
                as_json: bool = json_opt) -> None:
        """Import a JSONL file (progress bar on long imports)."""
        with open_db(db, progress=not as_json) as d:
            try:
                counts = import_jsonl(d, path, keep_ids=keep_ids, progress=not as_json)
            except (ValueError, OSError) as exc:
                fail(str(exc))
            emit(counts, as_json)

    @app.command()
    def export(path: str, db: str = db_opt,
               kind: list[str] = typer.Option(None, "--kind", help="Repeatable."),
               no_embeddings: bool = typer.Option(False, "--no-embeddings"),
               as_json: bool = json_opt) -> None:
        """Export to a JSONL file."""
        with open_db(db, readonly=True) as d:
            ks = tuple(kind_of(k) for k in kind) if kind else ("patterns", "episodes",
                                                                "skills")
            try:
                counts = export_jsonl(d, path, kinds=ks, embeddings=not no_embeddings,
                                      progress=not as_json)
            except (ValueError, OSError) as exc:
                fail(str(exc))
            emit(counts, as_json)
