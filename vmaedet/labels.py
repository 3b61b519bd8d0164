"""AVA v2.2 action names and the 60-class evaluation subset.

Logit ``i`` of the detector corresponds to AVA action id ``i + 1``.
"""

from __future__ import annotations

from vmaedet.constants import NUM_CLASSES

#: The 80 AVA v2.2 action names; ``AVA_ACTIONS[i]`` is action id ``i + 1``.
AVA_ACTIONS: tuple[str, ...] = (
    'bend/bow (at the waist)',
    'crawl',
    'crouch/kneel',
    'dance',
    'fall down',
    'get up',
    'jump/leap',
    'lie/sleep',
    'martial art',
    'run/jog',
    'sit',
    'stand',
    'swim',
    'walk',
    'answer phone',
    'brush teeth',
    'carry/hold (an object)',
    'catch (an object)',
    'chop',
    'climb (e.g., a mountain)',
    'clink glass',
    'close (e.g., a door, a box)',
    'cook',
    'cut',
    'dig',
    'dress/put on clothing',
    'drink',
    'drive (e.g., a car, a truck)',
    'eat',
    'enter',
    'exit',
    'extract',
    'fishing',
    'hit (an object)',
    'kick (an object)',
    'lift/pick up',
    'listen (e.g., to music)',
    'open (e.g., a window, a car door)',
    'paint',
    'play board game',
    'play musical instrument',
    'play with pets',
    'point to (an object)',
    'press',
    'pull (an object)',
    'push (an object)',
    'put down',
    'read',
    'ride (e.g., a bike, a car, a horse)',
    'row boat',
    'sail boat',
    'shoot',
    'shovel',
    'smoke',
    'stir',
    'take a photo',
    'text on/look at a cellphone',
    'throw',
    'touch (an object)',
    'turn (e.g., a screwdriver)',
    'watch (e.g., TV)',
    'work on a computer',
    'write',
    'fight/hit (a person)',
    'give/serve (an object) to (a person)',
    'grab (a person)',
    'hand clap',
    'hand shake',
    'hand wave',
    'hug (a person)',
    'kick (a person)',
    'kiss (a person)',
    'lift (a person)',
    'listen to (a person)',
    'play with kids',
    'push (another person)',
    'sing to (e.g., self, a person, a group)',
    'take (an object) from (a person)',
    'talk to (e.g., self, a person, a group)',
    'watch (a person)',
)

#: The 60 action ids evaluated by the official AVA v2.1/v2.2 frame-mAP protocol.
AVA_EVAL_IDS: tuple[int, ...] = (1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 20, 22, 24, 26, 27, 28, 29, 30, 34, 36, 37, 38, 41, 43, 45, 46, 47, 48, 49, 51, 52, 54, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 72, 73, 74, 76, 77, 78, 79, 80)

assert len(AVA_ACTIONS) == NUM_CLASSES


def action_name(action_id: int) -> str:
    """Return the AVA name of a 1-based action id."""
    if not 1 <= action_id <= NUM_CLASSES:
        raise ValueError(f"AVA action ids are 1..{NUM_CLASSES}; received {action_id}")
    return AVA_ACTIONS[action_id - 1]
