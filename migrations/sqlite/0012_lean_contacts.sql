-- Fewer index entries per contact, which is most of what an import writes:
-- the current consent state is read from the ledger (its newest event per
-- channel and purpose, through consent_events_contact), and a contact's
-- memberships are found through the lists of its workspace (the primary key of
-- list_members), so neither needs a structure of its own.
DROP TABLE consent_state;
DROP INDEX list_members_contact;
