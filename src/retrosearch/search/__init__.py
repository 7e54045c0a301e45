"""The search algorithms, one per file: Retro-Search (`retro_search`) and the shortest-correct-of-N baseline
(`shortest_of_n`). They see an engine only through `engines.base`."""
