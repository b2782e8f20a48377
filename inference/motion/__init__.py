"""Characters that move: the humanoid skeleton, auto-rigging, the animation library, motion export and
text-to-motion. `skeleton` is the shared vocabulary (bone names, the canonical T-pose, clips, retargeting)."""
