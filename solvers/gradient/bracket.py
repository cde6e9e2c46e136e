"""One number from a signed signal only: expand until the sign flips, then bracket and bisect.

`Bracket` finds where a signal `g(x)` changes sign (the wanted value of one number) when all
that is known at each tried `x` is `g`'s sign, and maybe its size: "larger" / "smaller", or
"the output is 9, it should be 16" (g = 16 - 9). It asks nothing itself: a caller tells it
the signal observed at the current value and gets the next value to try, one per step, so
it fits a training loop where each step runs the workflow once.

- No sign change seen yet: step away in the signal's direction (times the slope's sign once
  two points have shown it), doubling the step each time the sign stays; with sizes known, a
  secant step (limited to 4x the last step) replaces the doubling.
- A sign change: the two points bracket the solution; the next value is the Illinois
  (regula falsi) point when sizes are known, else the midpoint, kept inside the middle of
  the bracket. The bracket only shrinks, so the search converges whatever the sizes say.
- Bounds are respected; an integer stops when the bracket holds no other integer.

The state is plain JSON data (`state_dict` / `load_state_dict`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: the first step, as a share of max(|x|, 1)
FIRST_STEP = 0.5
#: a bracket's new point stays at least this share of its width away from both ends
KEEP_INSIDE = 0.01
#: with directions only, this many expansions without a sign change turn the search around
#: (the relation may fall as the number grows; sizes would have shown it)
TURN_AFTER = 3
MAX_SECANT_GROWTH = 4.0


@dataclass
class Observation:
    """The signal seen at one value: its sign (+1: the value should grow, for an increasing
    relation) and its size when known (None: a direction only)."""

    x: float
    sign: int
    size: float | None = None

    @property
    def g(self) -> float:
        return self.sign * (self.size if self.size is not None else 1.0)


@dataclass
class Bracket:
    """The search state of one number (see the module doc)."""

    bounds: tuple[float, float] | None = None
    integer: bool = False
    observations: list[Observation] = field(default_factory=list)
    low: Observation | None = None  # the bracket's ends, once a sign change was seen
    high: Observation | None = None
    step: float | None = None
    slope_sign: int = 1  # +1 until two observations say the signal falls as x grows
    expansions: int = 0  # steps away without a sign change
    turned: bool = False  # the search turned around once (directions only)
    _stale: int = 0  # Illinois: how many times in a row the same end was kept
    _stale_end: str = "low"  # ... and which end that is

    # --- telling and asking ---------------------------------------------------------------------
    def tell(self, x: float, sign: int, size: float | None = None) -> None:
        """Record the signal at `x`: `sign` > 0 when the output should grow, < 0 when it
        should shrink, 0 when it is right; `size` the distance when the text gives one."""
        obs = Observation(float(x), int(math.copysign(1, sign)) if sign else 0,
                          None if size is None else abs(float(size)))
        self.observations.append(obs)
        if obs.sign == 0:
            return
        self._learn_slope(obs)
        if self.low is not None and self.high is not None:
            self._shrink(obs)
            return
        for other in reversed(self.observations[:-1]):
            if other.sign and other.sign != obs.sign and other.x != obs.x:
                self.low, self.high = sorted((other, obs), key=lambda o: o.x)
                break

    def ask(self) -> float:
        """The next value to try (the last one when the signal said it is right)."""
        if not self.observations:
            raise ValueError("tell the signal at the current value first")
        last = self.observations[-1]
        if last.sign == 0 or self.converged():
            return self._fit(last.x)
        if self.low is not None and self.high is not None:
            return self._fit(self._inside())
        return self._fit(self._expand(last))

    def converged(self) -> bool:
        """True once the bracket is as small as the number's type allows."""
        if self.low is None or self.high is None:
            return False
        width = self.high.x - self.low.x
        if self.integer:
            return width <= 1
        return width <= 1e-9 * max(abs(self.low.x), abs(self.high.x), 1.0)

    # --- the steps ------------------------------------------------------------------------------
    def _learn_slope(self, obs: Observation) -> None:
        """The signal's trend from the two newest signed points with sizes on one side."""
        sized = [o for o in self.observations if o.sign and o.size is not None and o.sign == obs.sign]
        if obs.size is None or len(sized) < 2 or self.low is not None:
            return
        a, b = sized[-2], sized[-1]
        if a.x != b.x and a.g != b.g:
            # g shrinking towards 0 as x moves in g's direction means an increasing relation
            toward = (b.x - a.x) * obs.sign > 0
            closer = abs(b.g) < abs(a.g)
            self.slope_sign = 1 if toward == closer else -1

    def _expand(self, last: Observation) -> float:
        if last.size is None and self.expansions >= TURN_AFTER and not self.turned:
            # try the other side, from the start, once
            self.slope_sign, self.step, self.turned = -self.slope_sign, None, True
            last = self.observations[0]
        self.expansions += 1
        direction = last.sign * self.slope_sign
        base = self.step or FIRST_STEP * max(abs(last.x), 1.0)
        secant = self._secant(last)
        if secant is not None and secant * direction > 0:
            step = min(abs(secant), MAX_SECANT_GROWTH * base)
        else:
            step = base * (2.0 if self.step is not None else 1.0)
        self.step = step
        return last.x + direction * step

    def _secant(self, last: Observation) -> float | None:
        """The secant step from the two newest sized observations (None without them)."""
        sized = [o for o in self.observations if o.sign and o.size is not None]
        if last.size is None or len(sized) < 2:
            return None
        a, b = sized[-2], sized[-1]
        if a.x == b.x or a.g == b.g:
            return None
        return -b.g * (b.x - a.x) / (b.g - a.g)

    def _inside(self) -> float:
        low, high = self.low, self.high
        assert low is not None and high is not None
        width = high.x - low.x
        if low.size is not None and high.size is not None:
            g_low, g_high = low.g, high.g
            if self._stale >= 2:  # Illinois: halve the end that keeps being kept
                g_low, g_high = (g_low / 2, g_high) if self._stale_end == "low" else (g_low, g_high / 2)
            x = low.x - g_low * width / (g_high - g_low)
        else:
            x = low.x + width / 2
        margin = KEEP_INSIDE * width
        x = min(max(x, low.x + margin), high.x - margin)
        if self.integer:
            x = float(round(x))
            if x <= low.x or x >= high.x:
                x = float(math.floor(low.x + width / 2))
        return x

    def _shrink(self, obs: Observation) -> None:
        low, high = self.low, self.high
        assert low is not None and high is not None
        if not low.x < obs.x < high.x:
            return  # outside the bracket (the value was changed elsewhere): keep the bracket
        if obs.sign == low.sign:
            self.low = obs
            kept = "high"
        else:
            self.high = obs
            kept = "low"
        self._stale = self._stale + 1 if kept == self._stale_end else 1
        self._stale_end = kept

    def _fit(self, x: float) -> float:
        if self.bounds is not None:
            x = min(max(x, self.bounds[0]), self.bounds[1])
        if self.integer:
            x = float(round(x))
        return x

    # --- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The observations and the bracket, as JSON data."""
        def obs(o: Observation | None) -> list[Any] | None:
            return None if o is None else [o.x, o.sign, o.size]

        return {"observations": [obs(o) for o in self.observations], "low": obs(self.low),
                "high": obs(self.high), "step": self.step, "slope_sign": self.slope_sign,
                "expansions": self.expansions, "turned": self.turned,
                "stale": [self._stale, self._stale_end]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load `state_dict()`'s output (raises on a malformed state, changing nothing)."""
        def obs(item: Any) -> Observation | None:
            return None if item is None else Observation(float(item[0]), int(item[1]),
                                                         None if item[2] is None else float(item[2]))

        observations = [obs(o) for o in state["observations"]]
        low, high = obs(state["low"]), obs(state["high"])
        step = None if state["step"] is None else float(state["step"])
        slope = int(state["slope_sign"])
        stale, stale_end = int(state["stale"][0]), str(state["stale"][1])
        if slope not in (-1, 1) or stale_end not in ("low", "high"):
            raise ValueError("a bracket state holds an unknown slope sign or end")
        self.observations = [o for o in observations if o is not None]
        self.low, self.high, self.step, self.slope_sign = low, high, step, slope
        self.expansions = int(state.get("expansions", 0))
        self.turned = bool(state.get("turned", False))
        self._stale, self._stale_end = stale, stale_end
