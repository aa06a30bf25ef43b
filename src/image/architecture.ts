// The CPU architectures images are built for, by their Debian names: the one list that requests,
// the base-artifact catalog, PE machine types and tool paths all go by.
export const ARCHITECTURES = ['amd64', 'arm64'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];
