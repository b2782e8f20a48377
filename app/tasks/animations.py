"""The animation library's catalogue: which actions this server animates, under Meshy's ids and names.

Pure data, shared by the API (validating `action_id`, serving the catalogue) and the worker (whose clip library,
`inference.motion.library`, has one clip per id here; a test keeps the two equal). Ids, names, categories and
sub-categories are those of Meshy's catalogue for the same action (meshy-api.md §10.1), so a client that hard-codes
`action_id: 0` for Idle gets an idle. Ids are not contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CATEGORIES = ("WalkAndRun", "BodyMovements", "DailyActions", "Fighting", "Dancing")
PREVIEWS_DIR = ".previews"


@dataclass(frozen=True)
class Action:
    action_id: int
    key: str
    name: str
    category: str
    sub_category: str
    loop: bool
    duration_s: float
    is_default: bool = False


# (id, key, name, category, sub-category, loops, seconds), one row per clip of `inference.motion.library`.
_TABLE: tuple[tuple[int, str, str, str, str, bool, float], ...] = (
    (0, 'idle', 'Idle', 'DailyActions', 'Idle', True, 4.0),
    (1, 'walking_woman', 'Walking_Woman', 'WalkAndRun', 'Walking', True, 2.133),
    (2, 'alert', 'Alert', 'DailyActions', 'LookingAround', True, 3.0),
    (8, 'dead', 'Dead', 'Fighting', 'Dying', False, 2.5),
    (11, 'idle_02', 'Idle_02', 'DailyActions', 'Idle', True, 5.0),
    (12, 'idle_03', 'Idle_03', 'DailyActions', 'Idle', True, 4.0),
    (14, 'run_02', 'Run_02', 'WalkAndRun', 'Running', True, 1.467),
    (15, 'run_03', 'Run_03', 'WalkAndRun', 'Running', True, 1.533),
    (16, 'run_fast', 'RunFast', 'WalkAndRun', 'Running', True, 1.267),
    (21, 'walk_fight_forward', 'Walk_Fight_Forward', 'WalkAndRun', 'Walking', True, 2.4),
    (22, 'funny_dancing_01', 'FunnyDancing_01', 'Dancing', 'Dancing', True, 4.0),
    (23, 'funny_dancing_02', 'FunnyDancing_02', 'Dancing', 'Dancing', True, 4.0),
    (24, 'funny_dancing_03', 'FunnyDancing_03', 'Dancing', 'Dancing', True, 4.0),
    (25, 'agree_gesture', 'Agree_Gesture', 'DailyActions', 'Interacting', False, 2.0),
    (26, 'angry_stomp', 'Angry_Stomp', 'DailyActions', 'Interacting', False, 2.4),
    (28, 'big_wave_hello', 'Big_Wave_Hello', 'DailyActions', 'Interacting', False, 3.0),
    (30, 'casual_walk', 'Casual_Walk', 'WalkAndRun', 'Walking', True, 2.2),
    (31, 'catching_breath', 'Catching_Breath', 'BodyMovements', 'Acting', True, 2.0),
    (33, 'chair_sit_idle_m', 'Chair_Sit_Idle_M', 'DailyActions', 'Idle', True, 4.0),
    (36, 'confused_scratch', 'Confused_Scratch', 'DailyActions', 'Idle', False, 3.0),
    (40, 'excited_walk_m', 'Excited_Walk_M', 'BodyMovements', 'Acting', True, 1.8),
    (41, 'formal_bow', 'Formal_Bow', 'DailyActions', 'Interacting', False, 3.0),
    (44, 'happy_jump_f', 'Happy_jump_f', 'BodyMovements', 'Acting', False, 2.2),
    (50, 'phone_call_gesture', 'Phone_Call_Gesture', 'DailyActions', 'Interacting', True, 3.0),
    (51, 'shouting_angrily', 'Shouting_Angrily', 'BodyMovements', 'Acting', False, 2.5),
    (53, 'sit_to_stand_transition_m', 'Sit_to_Stand_Transition_M', 'DailyActions', 'Transitioning', False, 2.0),
    (54, 'squat_stance', 'Squat_Stance', 'Dancing', 'Dancing', True, 2.0),
    (57, 'stand_to_sit_transition_m', 'Stand_to_Sit_Transition_M', 'DailyActions', 'Transitioning', False, 2.0),
    (59, 'victory_cheer', 'Victory_Cheer', 'BodyMovements', 'Acting', False, 2.5),
    (62, 'penguin_walk', 'penguin_walk', 'BodyMovements', 'Acting', True, 1.6),
    (63, 'arm_circle_shuffle', 'Arm_Circle_Shuffle', 'Dancing', 'Dancing', True, 3.2),
    (70, 'cardio_dance', 'Cardio_Dance', 'Dancing', 'Dancing', True, 2.0),
    (74, 'gangnam_groove', 'Gangnam_Groove', 'Dancing', 'Dancing', True, 2.0),
    (87, 'boxing_practice', 'Boxing_Practice', 'Fighting', 'Punching', True, 2.4),
    (88, 'chest_pound_taunt', 'Chest_Pound_Taunt', 'Fighting', 'Transitioning', False, 2.4),
    (89, 'combat_stance', 'Combat_Stance', 'Fighting', 'AttackingwithWeapon', True, 2.0),
    (92, 'double_combo_attack', 'Double_Combo_Attack', 'Fighting', 'AttackingwithWeapon', False, 1.8),
    (103, 'simple_kick', 'Simple_Kick', 'Fighting', 'AttackingwithWeapon', False, 1.6),
    (106, 'confident_walk', 'Confident_Walk', 'WalkAndRun', 'Walking', True, 2.133),
    (107, 'confident_strut', 'Confident_Strut', 'WalkAndRun', 'Walking', True, 2.267),
    (110, 'hello_run', 'Hello_Run', 'WalkAndRun', 'Running', True, 1.533),
    (111, 'injured_walk', 'Injured_Walk', 'WalkAndRun', 'Walking', True, 2.8),
    (112, 'monster_walk', 'Monster_Walk', 'WalkAndRun', 'Walking', True, 3.0),
    (113, 'mummy_stagger', 'Mummy_Stagger', 'BodyMovements', 'Acting', True, 3.2),
    (114, 'proud_strut', 'Proud_Strut', 'WalkAndRun', 'Walking', True, 2.4),
    (115, 'quick_walk', 'Quick_Walk', 'WalkAndRun', 'Walking', True, 1.8),
    (121, 'thoughtful_walk', 'Thoughtful_Walk', 'WalkAndRun', 'Walking', True, 2.8),
    (122, 'texting_walk', 'Texting_Walk', 'WalkAndRun', 'Walking', True, 2.4),
    (124, 'walking_with_phone', 'Walking_with_Phone', 'WalkAndRun', 'Walking', True, 2.4),
    (138, 'block1', 'Block1', 'Fighting', 'Blocking', False, 1.4),
    (156, 'stand_dodge', 'Stand_Dodge', 'Fighting', 'Transitioning', False, 1.4),
    (174, 'face_punch_reaction', 'Face_Punch_Reaction', 'Fighting', 'GettingHit', False, 1.6),
    (178, 'hit_reaction', 'Hit_Reaction', 'Fighting', 'GettingHit', False, 1.5),
    (191, 'left_jab_from_guard', 'Left_Jab_from_Guard', 'Fighting', 'Punching', False, 1.2),
    (192, 'right_jab_from_guard', 'Right_Jab_from_Guard', 'Fighting', 'Punching', False, 1.3),
    (193, 'left_hook_from_guard', 'Left_Hook_from_Guard', 'Fighting', 'Punching', False, 1.3),
    (194, 'right_uppercut_from_guard', 'Right_Uppercut_from_Guard', 'Fighting', 'Punching', False, 1.4),
    (198, 'punch_combo', 'Punch_Combo', 'Fighting', 'Punching', False, 2.0),
    (206, 'spartan_kick', 'Spartan_Kick', 'Fighting', 'Punching', False, 1.7),
    (207, 'roundhouse_kick', 'Roundhouse_Kick', 'Fighting', 'Punching', False, 1.8),
    (211, 'boxing_guard_step_knee_strike', 'Boxing_Guard_Step_Knee_Strike', 'Fighting', 'Punching', False, 1.5),
    (212, 'elbow_strike', 'Elbow_Strike', 'Fighting', 'Punching', False, 1.4),
    (214, 'punch_forward_with_both_fists', 'Punch_Forward_with_Both_Fists', 'Fighting', 'Punching', False, 1.5),
    (215, 'high_kick', 'High_Kick', 'Fighting', 'Punching', False, 1.7),
    (267, 'sleep_normally', 'Sleep_Normally', 'DailyActions', 'Sleeping', True, 4.0),
    (290, 'wave_one_hand', 'Wave_One_Hand', 'DailyActions', 'Interacting', False, 2.5),
    (291, 'wave_for_help', 'Wave_for_Help', 'DailyActions', 'Interacting', True, 2.0),
    (298, 'cheer_with_both_hands_up', 'Cheer_with_Both_Hands_Up', 'DailyActions', 'Interacting', True, 1.6),
    (313, 'talk_with_hands_open', 'Talk_with_Hands_Open', 'DailyActions', 'Interacting', True, 3.0),
    (317, 'shrug', 'Shrug', 'DailyActions', 'Interacting', False, 2.0),
    (319, 'air_squat', 'air_squat', 'DailyActions', 'WorkingOut', True, 2.4),
    (320, 'bicep_curl', 'bicep_curl', 'DailyActions', 'WorkingOut', True, 2.0),
    (326, 'jumping_jacks', 'jumping_jacks', 'DailyActions', 'WorkingOut', True, 1.2),
    (333, 'look_around_dumbfounded', 'Look_Around_Dumbfounded', 'DailyActions', 'LookingAround', False, 3.5),
    (342, 'stand_and_drink', 'Stand_and_Drink', 'DailyActions', 'Drinking', False, 3.5),
    (363, 'sit_cross_legged_on_floor', 'Sit_Cross_Legged_on_Floor', 'DailyActions', 'Transitioning', True, 4.0),
    (385, 'boxing_warmup', 'Boxing_Warmup', 'BodyMovements', 'Acting', True, 1.4),
    (388, 'show_both_arm_muscles', 'Show_Both_Arm_Muscles', 'BodyMovements', 'Acting', False, 2.5),
    (403, 'victory_fist_pump', 'Victory_Fist_Pump', 'BodyMovements', 'Acting', False, 2.0),
    (408, 'jazz_hands', 'Jazz_Hands', 'BodyMovements', 'Acting', True, 1.2),
    (409, 'finger_wag_no', 'Finger_Wag_No', 'BodyMovements', 'Acting', False, 2.2),
    (417, 'hop_with_arms_raised', 'Hop_with_Arms_Raised', 'BodyMovements', 'Acting', True, 1.0),
    (460, 'jump_with_arms_open', 'Jump_with_Arms_Open', 'BodyMovements', 'Jumping', False, 2.2),
    (461, 'jump_with_arms_and_legs_open', 'Jump_with_Arms_and_Legs_Open', 'BodyMovements', 'Jumping', False, 2.2),
    (466, 'regular_jump', 'Regular_Jump', 'BodyMovements', 'Jumping', False, 2.2),
    (509, 'lean_forward_sprint', 'Lean_Forward_Sprint', 'WalkAndRun', 'Running', True, 1.2),
    (524, 'cautious_crouch_walk_forward', 'Cautious_Crouch_Walk_Forward', 'WalkAndRun', 'CrouchWalking', True, 2.8),
    (544, 'walk_backward', 'Walk_Backward', 'WalkAndRun', 'Walking', True, 2.4),
    (551, 'carry_heavy_object_walk', 'Carry_Heavy_Object_Walk', 'WalkAndRun', 'Walking', True, 2.6),
    (553, 'elderly_shaky_walk', 'Elderly_Shaky_Walk', 'WalkAndRun', 'Walking', True, 3.2),
    (558, 'limping_walk', 'Limping_Walk', 'WalkAndRun', 'Walking', True, 2.667),
    (559, 'sneaky_walk', 'Sneaky_Walk', 'WalkAndRun', 'Walking', True, 3.2),
    (591, 'hip_hop_dance', 'Hip_Hop_Dance', 'Dancing', 'Dancing', True, 4.0),
    (595, 'jazz_danc', 'jazz_danc', 'Dancing', 'Dancing', True, 4.0),
    (596, 'ymca_dance', 'ymca_dance', 'Dancing', 'Dancing', True, 4.0),
)  # fmt: skip

DEFAULT_ACTION = 0  # Idle: `isDefault` in the public catalogue
ACTIONS: dict[int, Action] = {row[0]: Action(*row, is_default=row[0] == DEFAULT_ACTION) for row in _TABLE}


def is_valid_action(action_id: int) -> bool:
    return action_id in ACTIONS


def search(text: str | None, *, category: str | None = None, sub_category: str | None = None) -> list[Action]:
    """Actions whose name or key contains `text` (case-insensitive), in a category; ordered by id."""
    needle = (text or "").strip().lower()
    out = []
    for action in sorted(ACTIONS.values(), key=lambda a: a.action_id):
        if category and action.category.lower() != category.lower():
            continue
        if sub_category and action.sub_category.lower() != sub_category.lower():
            continue
        if needle and needle not in action.name.lower() and needle not in action.key.lower():
            continue
        out.append(action)
    return out


def preview_path(assets_root: Path, action_id: int) -> Path:
    """Where an action's preview GIF lives under the asset root (rendered by a worker)."""
    return assets_root / PREVIEWS_DIR / f"{int(action_id)}.gif"
