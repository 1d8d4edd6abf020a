"""The tablet's Kivy screens over the agent's API: route, stop, conflict, refused, forms.

``TabletRoot`` is the whole app's widget: the sync bar (always visible), the current screen,
and the navigation. It reads the agent only on Kivy's thread: the agent's observer (called on
the agent's threads) only fires a ``Clock.create_trigger``, so a burst of stream entries
becomes one refresh per trigger interval (``REFRESH_S``), not one per entry, and no widget is
ever touched off Kivy's thread. A timer rebuilds the screen every ``AGE_REFRESH_S`` so ages
keep moving. What each screen says comes from ``ui.viewmodels``; these modules only lay it out.

One module per screen (``route``, ``stop``, ``conflict``, ``refused``, ``form``), and ``root``
(``TabletRoot`` and the sync bar); a screen knows the root only as ``nav.Tablet``.
"""

from __future__ import annotations

from ui.screens.conflict import ConflictScreen
from ui.screens.form import FormScreen
from ui.screens.refused import RefusedScreen, refused_card
from ui.screens.root import REFRESH_S, SyncBarView, TabletRoot
from ui.screens.route import ROW_MM, RouteScreen, StopRowView
from ui.screens.stop import StopScreen

__all__ = [
    "REFRESH_S",
    "ROW_MM",
    "ConflictScreen",
    "FormScreen",
    "RefusedScreen",
    "RouteScreen",
    "StopRowView",
    "StopScreen",
    "SyncBarView",
    "TabletRoot",
    "refused_card",
]
