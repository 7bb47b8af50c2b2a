"""Online features: what the stream processor keeps up to date and every request reads.

Per user, the recent history (bounded, with times, event types and weights) and the
disliked items; per item, all-time and time-decayed (trending) counts; per segment
(``device=mobile``, ``country=DE``, ...), item counts. Two backends share one
protocol (:class:`OnlineFeatures`): :class:`MemoryOnlineFeatures` (embedded, one
process) and :class:`RedisOnlineFeatures` (shared by workers and replicas).
"""

from reco.features.base import EventUpdate, HistoryEntry, OnlineFeatures, history_frame
from reco.features.memory import MemoryOnlineFeatures
from reco.features.redis_features import RedisOnlineFeatures, StreamAck

__all__ = [
    "EventUpdate",
    "HistoryEntry",
    "MemoryOnlineFeatures",
    "OnlineFeatures",
    "RedisOnlineFeatures",
    "StreamAck",
    "history_frame",
]
