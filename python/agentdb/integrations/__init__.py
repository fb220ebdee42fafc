"""AgentDB inside agent frameworks, one module per framework (each behind its own extra):

- :mod:`.langchain`: ``AgentDBVectorStore``, a LangChain ``VectorStore`` (``langchain``);
- :mod:`.langgraph`: ``AgentDBStore``, a LangGraph ``BaseStore`` for long-term memory
  (``langgraph``);
- :mod:`.llamaindex`: ``AgentDBVectorStore``, a LlamaIndex vector store (``llamaindex``).

Nothing here imports a framework until its module is imported.

>>> import agentdb.integrations
>>> sorted(agentdb.integrations.MODULES)
['langchain', 'langgraph', 'llamaindex']
"""

from __future__ import annotations

__all__ = ["MODULES"]

#: Integration module -> the extra that provides its framework.
MODULES = {"langchain": "langchain", "langgraph": "langgraph", "llamaindex": "llamaindex"}
