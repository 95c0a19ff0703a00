"""Search engines of the `retrieval` environment, behind one interface (`base.SearchEngine`, which
gives the `sim.retrieval.Retriever` methods the tools read):

- `bm25_index`: an on-disk BM25 index (bm25s), built by streaming a corpus file (`mtr index build`);
- `dense`: e5 embeddings searched with faiss (optional; `mtr index build --kind dense`);
- `http`: a retrieval server in Search-R1's protocol (`mtr serve-retriever`, or Search-R1's own);
- `docstore`: the passages of an index on disk, by id and by title;
- `server`: `mtr serve-retriever`;
- `open`: the engine a `RetrievalEnvConfig` names; a corpus file is indexed into the cache once.
"""

from .base import Hit, SearchEngine
from .open import corpus_path, open_retriever

__all__ = ["Hit", "SearchEngine", "corpus_path", "open_retriever"]
