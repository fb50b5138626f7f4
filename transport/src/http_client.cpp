// Implementation lands with its component (work in progress).
